/**
 * Routes no protection applies to (rate limit, load shedding): the probes and the scrape must reach
 * their handlers on an overloaded or busy server, or the orchestrator and the monitoring see a
 * failure that is not there (/healthz), cannot tell why (/readyz), or lose the figures that would
 * explain it (/metrics).
 */
export const EXEMPT_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);
