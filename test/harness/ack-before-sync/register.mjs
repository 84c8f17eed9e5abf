/**
 * The broken control of the power-cut test: `node --import` this file and digestd answers 201 once
 * LMDB has committed a write, before the commit is fsynced (the workers inherit the flag). Loaded
 * only by tests and scripts; it swaps the `lmdb` module digestd imports for ./lmdb.mjs.
 */
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
