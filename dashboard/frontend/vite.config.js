// Builds the dashboard's page into ../mddashboard/static (served by the Python server, shipped in its
// wheel). `base: './'` keeps every URL relative, so the page also works behind a proxy at a sub-path.
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  build: {
    outDir: '../mddashboard/static',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    chunkSizeWarningLimit: 200,
  },
  test: {
    environment: 'node',
    include: ['test/**/*.test.js'],
  },
});
