// Data-preparation worker entry. Worker threads do not inherit the main thread's tsx loader
// hooks, so register them here before loading the TypeScript implementation.
import { register } from 'tsx/esm/api';
register();
await import('./worker-impl.ts');
