// Moved: argument parsing is in args.ts, the built-in commands in commands/*. This re-export is
// kept only for imports in flight (cluster.ts); import from './args.js' instead.
export { integerArg } from './args.js';
