import { runClusterWorker } from './worker.js';

// The entry point of every worker the supervisor forks (cluster.setupPrimary's exec): it waits for
// the primary's start message, which carries the configuration.
runClusterWorker();
