// Builds the canvas into ../static/canvas/: one ES module (canvas.js) and one stylesheet
// (canvas.css), committed and shipped in the wheel. `npm ci && npm run build`.
import { defineConfig } from "vite";

export default defineConfig({
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
  build: {
    outDir: "../static/canvas",
    emptyOutDir: true,
    minify: true,
    sourcemap: false,
    lib: { entry: "src/main.jsx", formats: ["es"], fileName: () => "canvas.js", cssFileName: "canvas" },
    rolldownOptions: { output: { inlineDynamicImports: true, minify: true } },
  },
});
