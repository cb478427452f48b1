//! sync as another app uses it: a document created on alice and shared with bob, who joins
//! (answered once the snapshot is there) and edits; both nodes end with the same content; a
//! node that is no member learns nothing; bad bodies and a missing grant get errors.

use crate::checks;
use crate::harness::{AgentCommand, Ctx};
use crate::tester_lib::TestResult;
use crate::{check, fail};
use p2p_common::api::sync::{Content, DocId, Member, Op, Role, Value};
use p2p_common::client::{ProcessTransport, SyncClient};

pub fn run(ctx: &Ctx) -> TestResult {
    bad_bodies(ctx)?;
    shared_document(ctx)?;
    checks::without_grant(ctx, "sync: an app without the grant", "sync")
}

fn bad_bodies(ctx: &Ctx) -> TestResult {
    let cases: [(&[u8], &str); 4] = [
        (b"not json", "BadRequest"),
        (br#"{"Dance": {}}"#, "BadRequest"),
        (br#"{"Read": {"doc": "alice.os/x", "x": 1}}"#, "BadRequest"),
        (br#"{"Read": {"doc": "no-such-doc"}}"#, "BadRequest"),
    ];
    let local_only = br#"{"Create": {"name": "kit", "members": []}}"#;
    checks::bad_bodies(
        ctx,
        "sync: bad bodies get errors",
        "sync",
        &cases,
        (1 << 20) + 1,
        local_only,
    )
}

fn content_of(ctx: &Ctx, node_index: usize, doc: &DocId) -> Result<Content, String> {
    if node_index == 0 {
        return SyncClient::local(&ctx.our_node, ProcessTransport)
            .read(doc)
            .map_err(|e| e.to_string());
    }
    let v = ctx.agent(ctx.node(node_index), &AgentCommand::SyncRead(doc.clone()))?;
    serde_json::from_value(v).map_err(|e| format!("not a Content: {e}"))
}

fn shared_document(ctx: &Ctx) -> TestResult {
    const T: &str = "sync: a document edited on two nodes";
    let (us, bob, charlie) = (ctx.node(0), ctx.node(1), ctx.node(2));
    let mut sync = SyncClient::local(us, ProcessTransport);
    let members = vec![Member {
        node: bob.clone(),
        role: Role::Writer,
    }];
    let info = match sync.create("kit-notes", members) {
        Ok(i) => i,
        Err(e) => fail!(T, "create: {e}"),
    };
    let doc = info.doc.clone();
    check!(T, info.joined && info.role.is_none(), "created {info:?}");
    let first = vec![
        Op::Insert {
            pos: 0,
            text: "Hello".into(),
        },
        Op::Update {
            item_id: "task-1".into(),
            field: "done".into(),
            value: Value::Bool(false),
        },
    ];
    if let Err(e) = sync.edit(&doc, "alice-1", first, None) {
        fail!(T, "alice's first edit: {e}");
    }

    // bob joins: the answer comes once the snapshot is there, so he reads alice's edit now.
    let joined = match ctx.agent(bob, &AgentCommand::SyncJoin(doc.clone())) {
        Ok(v) => v,
        Err(e) => fail!(T, "{bob} could not join {doc}: {e}"),
    };
    check!(
        T,
        joined["joined"] == true && joined["role"] == "Writer",
        "{bob} joined {joined}"
    );
    match content_of(ctx, 1, &doc) {
        Ok(c) => check!(
            T,
            c.text == "Hello" && c.items.len() == 1,
            "{bob} read {c:?} right after joining"
        ),
        Err(e) => fail!(T, "{bob} read: {e}"),
    }

    // Both edit at once; both end with both edits.
    let bob_edit = AgentCommand::SyncEdit {
        doc: doc.clone(),
        op_id: "bob-1".into(),
        ops: vec![
            Op::Insert {
                pos: 5,
                text: " from bob".into(),
            },
            Op::Update {
                item_id: "task-1".into(),
                field: "by".into(),
                value: Value::Str("bob".into()),
            },
        ],
    };
    if let Err(e) = ctx.agent(bob, &bob_edit) {
        fail!(T, "{bob}'s edit: {e}");
    }
    let ops = vec![
        Op::Insert {
            pos: 0,
            text: "Oh, ".into(),
        },
        Op::Update {
            item_id: "task-1".into(),
            field: "done".into(),
            value: Value::Bool(true),
        },
    ];
    if let Err(e) = sync.edit(&doc, "alice-2", ops, None) {
        fail!(T, "alice's second edit: {e}");
    }
    let mut last = (None, None);
    let same = ctx.wait_until(60, 1_000, || {
        let a = content_of(ctx, 0, &doc).ok();
        let b = content_of(ctx, 1, &doc).ok();
        let done = a.is_some() && a == b;
        last = (a, b);
        done
    });
    check!(T, same, "never the same content: {last:?}");
    let c = last.0.expect("compared equal");
    check!(
        T,
        c.text == "Oh, Hello from bob",
        "converged text {:?}",
        c.text
    );
    let fields: Vec<(&str, &Value)> = c.items[0]
        .fields
        .iter()
        .map(|f| (f.field.as_str(), &f.value))
        .collect();
    check!(
        T,
        fields
            == [
                ("by", &Value::Str("bob".into())),
                ("done", &Value::Bool(true))
            ],
        "converged item {fields:?}"
    );

    // charlie is no member: joining and reading tell him nothing.
    const N: &str = "sync: a node that is no member is refused";
    match ctx.agent(charlie, &AgentCommand::SyncJoin(doc.clone())) {
        Ok(v) => fail!(N, "{charlie} joined {doc}: {v}"),
        Err(e) => check!(N, e.contains("NotFound"), "{charlie}'s join: {e}"),
    }
    match content_of(ctx, 2, &doc) {
        Ok(c) => fail!(N, "{charlie} read {c:?}"),
        Err(e) => check!(N, e.contains("NotFound"), "{charlie}'s read: {e}"),
    }
    // A member's edit is refused to a reader too: bob becomes a reader.
    if let Err(e) = sync.set_member(&doc, bob, Some(Role::Reader)) {
        fail!(N, "making {bob} a reader: {e}");
    }
    let mut attempt = 0;
    let refused = ctx.wait_until(30, 1_000, || {
        attempt += 1;
        let edit = AgentCommand::SyncEdit {
            doc: doc.clone(),
            op_id: format!("bob-reader-{attempt}"),
            ops: vec![Op::Insert {
                pos: 0,
                text: "x".into(),
            }],
        };
        ctx.agent(bob, &edit)
            .is_err_and(|e| e.contains("Forbidden"))
    });
    check!(N, refused, "{bob}, now a reader, may still edit");
    Ok(())
}
