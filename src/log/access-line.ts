import { pino, type Logger } from 'pino';

/** The fields of one access line, in the order they are written. */
export interface AccessFields {
  /** Bound as a pino child binding would be; left out when undefined (the logger's own line). */
  reqId: string | undefined;
  method: string;
  url: string;
  status: number;
  bytes: number;
  ms: number;
  remote: string | undefined;
}

/**
 * Writes one access line: what `logger.child({ reqId }).info({ method, ... }, 'request')` writes
 * (or `logger.info(...)` when there is no reqId).
 */
export type AccessLineWriter = (fields: AccessFields) => void;

const INFO = pino.levels.values.info ?? 30;

/** Characters a JSON string cannot hold as they are, and lone surrogates, which JSON.stringify escapes. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what must be escaped
const NEEDS_ESCAPING = /["\\\u0000-\u001f\ud800-\udfff]/;

function jsonString(value: string): string {
  return NEEDS_ESCAPING.test(value) ? JSON.stringify(value) : `"${value}"`;
}

/** pino writes a number that is not finite as null. */
function jsonNumber(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null';
}

/**
 * The access line of `logger`, built from a template and written straight to the logger's
 * destination. A pino child per request plus its `info()` cost several times the line itself, and
 * a fresh child per request drove V8 into slow property definitions; the template takes the
 * logger's own pieces (its level label, timestamp function, bindings, message key and line end,
 * through pino's documented symbols), so the line is the one pino would write, field for field and
 * byte for byte (test/unit/log/access-line.test.ts). Strings are escaped only when they need it.
 * A logger whose lines pino shapes further (a mixin, a nested key, a log formatter, a stream that
 * wants metadata) gets pino's own child and `info()` instead.
 */
export function accessLineWriter(logger: Logger): AccessLineWriter {
  const internal = <T>(key: symbol) => (logger as unknown as Record<symbol, unknown>)[key] as T;
  const { symbols } = pino;
  const stream = internal<({ write(line: string): unknown } & Record<symbol, unknown>) | undefined>(
    symbols.streamSym,
  );
  const template =
    typeof stream?.write === 'function' &&
    stream[symbols.needsMetadataGsym] !== true &&
    internal<unknown>(symbols.mixinSym) == null &&
    internal<unknown>(symbols.nestedKeySym) == null &&
    internal<{ log?: unknown } | undefined>(symbols.formattersSym)?.log === undefined &&
    internal<{ streamWrite?: unknown } | undefined>(symbols.hooksSym)?.streamWrite === undefined;
  if (!template) {
    return ({ reqId, ...fields }) =>
      (reqId === undefined ? logger : logger.child({ reqId })).info(fields, 'request');
  }
  const start = internal<Record<number, string>>(symbols.lsCacheSym)[INFO] ?? '';
  const time = internal<() => string>(symbols.timeSym);
  const bindings = internal<string>(symbols.chindingsSym);
  const end = `,${jsonString(internal<string>(symbols.messageKeySym))}:"request"${internal<string>(symbols.endSym)}`;
  // The level can change while the process runs; pino announces each change.
  let enabled = logger.isLevelEnabled('info');
  logger.on('level-change', () => (enabled = logger.isLevelEnabled('info')));
  return (fields) => {
    if (!enabled) return;
    stream.write(
      `${start}${time()}${bindings}${fields.reqId === undefined ? '' : `,"reqId":${jsonString(fields.reqId)}`}` +
        `,"method":${jsonString(fields.method)}` +
        `,"url":${jsonString(fields.url)},"status":${jsonNumber(fields.status)}` +
        `,"bytes":${jsonNumber(fields.bytes)},"ms":${jsonNumber(fields.ms)}` +
        `${fields.remote === undefined ? '' : `,"remote":${jsonString(fields.remote)}`}${end}`,
    );
  };
}
