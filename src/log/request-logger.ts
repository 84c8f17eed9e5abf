import type { Bindings, ChildLoggerOptions, Logger } from 'pino';

type LogMethod = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * A request's logger that makes its pino child (with the request id bound) only when something
 * logs through it. Most requests log nothing but their access line, which is written from a
 * template (src/log/access-line.ts); a pino child made for every request is work most requests
 * never use, and it drives V8 into slow property definitions on each one.
 */
export class RequestLogger {
  readonly #parent: Logger;
  readonly #bindings: Bindings;
  readonly #options: ChildLoggerOptions;
  #child: Logger | undefined;

  constructor(parent: Logger, bindings: Bindings, options: ChildLoggerOptions) {
    this.#parent = parent;
    this.#bindings = bindings;
    this.#options = options;
  }

  /** The pino child, made on first use. */
  get logger(): Logger {
    return (this.#child ??= this.#parent.child(this.#bindings, this.#options));
  }

  get level(): string {
    return this.#child?.level ?? this.#options.level ?? this.#parent.level;
  }

  set level(level: string) {
    this.logger.level = level;
  }

  isLevelEnabled(level: string): boolean {
    return this.#child?.isLevelEnabled(level) ?? this.logger.isLevelEnabled(level);
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): Logger {
    return this.logger.child(bindings, options);
  }

  silent(): void {}

  fatal(...args: unknown[]): void {
    this.#log('fatal', args);
  }

  error(...args: unknown[]): void {
    this.#log('error', args);
  }

  warn(...args: unknown[]): void {
    this.#log('warn', args);
  }

  info(...args: unknown[]): void {
    this.#log('info', args);
  }

  debug(...args: unknown[]): void {
    this.#log('debug', args);
  }

  trace(...args: unknown[]): void {
    this.#log('trace', args);
  }

  #log(level: LogMethod, args: unknown[]): void {
    // A line below the level needs no child (unless the child has a level of its own).
    if (this.#child === undefined && this.#options.level === undefined && !this.#parent.isLevelEnabled(level))
      return;
    const logger = this.logger;
    Reflect.apply(logger[level], logger, args);
  }
}

/**
 * Fastify's childLoggerFactory: each request's `request.log` is a RequestLogger, whose pino child
 * (the same bindings and options Fastify would give it) exists only once something logs.
 */
export function lazyChildLogger(logger: Logger, bindings: Bindings, options: ChildLoggerOptions): Logger {
  return new RequestLogger(logger, bindings, options) as unknown as Logger;
}
