#!/usr/bin/env node
// Thin launcher: runs the TypeScript CLI through tsx, so no build step is needed.
//
// Every pending GStreamer pull and bus poll holds a libuv threadpool thread, and sharp and fs
// share that pool (default 4): size it before anything uses it. 16 serves 6 cameras.
process.env.UV_THREADPOOL_SIZE ??= '16';
const { register } = await import('tsx/esm/api');
register();
await import('../src/cli/main.ts');
