import { defineConfig } from "vite";

// The page lives under presence's path on a node (presence serves pkg/ui), and the
// playground serves it under the same path.
export default defineConfig({
  base: "/presence:p2p-patterns:p2p-patterns.os/",
  build: { outDir: "dist", assetsInlineLimit: 0, sourcemap: false },
});
