//! Pure core of `txcoord`. Until the service lands it is the shared minimal core: it answers
//! Ping and Info and rejects any other body with a clear error.

use p2p_common::basic::BasicService;
use p2p_common::Address;

pub fn new(our: Address) -> BasicService {
    BasicService::new(crate::NAME, our)
}
