import { defineConfig } from "vite";

// Relative asset paths: the same build works under a process path on a node
// (/presence:p2p-patterns:p2p-patterns.os/) and at / in the playground.
export default defineConfig({
  base: "./",
  build: { outDir: "dist", assetsInlineLimit: 0, sourcemap: false },
});
