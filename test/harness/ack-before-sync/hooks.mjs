// Module resolution hook: every import of 'lmdb' except ./lmdb.mjs's own gets ./lmdb.mjs.
const wrapper = new globalThis.URL('./lmdb.mjs', import.meta.url).href;

export function resolve(specifier, context, nextResolve) {
  if (specifier === 'lmdb' && context.parentURL !== wrapper) return { url: wrapper, shortCircuit: true };
  return nextResolve(specifier, context);
}
