import type { Metric, Registry } from 'prom-client';

/** Options of a TypedHistogram: those of prom-client's Histogram that digestd uses. */
export interface TypedHistogramOptions<Label extends string> {
  name: string;
  help: string;
  labelNames: readonly Label[];
  /** Upper bounds of the buckets, ascending. */
  buckets: readonly number[];
  /** Registries to register with. */
  registers: readonly Registry[];
}

/** One label set's observations, as a labelled child of prom-client's Histogram offers them. */
export interface HistogramSeries {
  /** Records one value, in seconds. */
  observe(value: number): void;
}

/** What `get()` lists: prom-client's metric object format (MetricObjectWithValues). */
interface ExportedValue {
  value: number;
  metricName: string;
  exemplar: null | undefined;
  labels: Record<string, string | number>;
}

/**
 * The observations of one label set: per-bucket (not cumulative) counts, then count, then sum,
 * in one typed array.
 */
class Series implements HistogramSeries {
  readonly values: Float64Array;
  /** The histogram's generation in which this series was last listed; -1 before its first observation. */
  listedIn = -1;

  constructor(
    private readonly histogram: TypedHistogram<string>,
    readonly labels: Readonly<Record<string, string>>,
  ) {
    this.values = new Float64Array(histogram.upperBounds.length + 2);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    if (this.listedIn !== this.histogram.generation) this.histogram.list(this);
    const bounds = this.histogram.upperBounds;
    const values = this.values;
    let bucket = 0;
    while (bucket < bounds.length && value > bounds[bucket]!) bucket += 1;
    // Past the last bound, a value counts only in +Inf (the count), as prom-client does.
    if (bucket < bounds.length) values[bucket]! += 1;
    values[bounds.length]! += 1;
    values[bounds.length + 1]! += value;
  }
}

/**
 * A Prometheus histogram kept in plain typed arrays, one per label set, and exposed through
 * prom-client's registry as a custom metric object (`registerMetric`, with `get()` returning
 * prom-client's metric format). prom-client's own `observe()` validates and hashes the labels on
 * every call, even through a labelled child; here a label set is looked up once (`labels()`),
 * and its child only counts.
 *
 * The exposition (text, and JSON for cluster aggregation) is the one prom-client's Histogram
 * gives for the same observations: the same values in the same order, label sets in the order
 * first observed, `le` first (test/unit/metrics.test.ts compares them).
 */
export class TypedHistogram<Label extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames: readonly Label[];
  readonly upperBounds: readonly number[];
  /** Bumped by reset(): each series is listed again (from zero) at its next observation. */
  generation = 0;
  /** Every label set asked for, by key. */
  readonly #series = new Map<string, Series>();
  /** The label sets observed since the last reset, in the order first observed. */
  #listed: Series[] = [];

  constructor(options: TypedHistogramOptions<Label>) {
    this.name = options.name;
    this.help = options.help;
    this.labelNames = [...options.labelNames];
    this.upperBounds = Object.freeze([...options.buckets]);
    for (const registry of options.registers) {
      // A custom metric object: the registry reads name, help, type, aggregator, get() and reset().
      registry.registerMetric(this as unknown as Metric);
    }
  }

  /**
   * The labelled child of one label set, as prom-client's `histogram.labels({...})` gives one: the
   * same object for the same label values, listed from its first observation on. Look a child up
   * once and keep it: this lookup costs about what prom-client's does.
   */
  labels(labels: Readonly<Record<Label, string>>): HistogramSeries {
    const key = JSON.stringify(this.labelNames.map((name) => labels[name]));
    let series = this.#series.get(key);
    if (series === undefined) {
      series = new Series(this, { ...labels });
      this.#series.set(key, series);
    }
    return series;
  }

  /** Lists a series from zero; called by its first observation since it was made or reset. */
  list(series: Series): void {
    series.values.fill(0);
    series.listedIn = this.generation;
    this.#listed.push(series);
  }

  /** Each listed label set and its count of observations, in the order first observed. */
  counts(): { labels: Readonly<Record<string, string>>; count: number }[] {
    const count = this.upperBounds.length;
    return this.#listed.map((series) => ({ labels: series.labels, count: series.values[count]! }));
  }

  /** prom-client's metric format, as its Histogram's `get()` gives it. */
  get(): Promise<{ name: string; help: string; type: string; values: ExportedValue[]; aggregator: string }> {
    const bounds = this.upperBounds;
    const bucketName = `${this.name}_bucket`;
    const values: ExportedValue[] = [];
    for (const series of this.#listed) {
      let cumulative = 0;
      // Shaped as prom-client's entries are (exemplar null on buckets, undefined on sum and count).
      for (let bucket = 0; bucket < bounds.length; bucket += 1) {
        cumulative += series.values[bucket]!;
        values.push({
          value: cumulative,
          metricName: bucketName,
          exemplar: null,
          labels: { le: bounds[bucket]!, ...series.labels },
        });
      }
      const count = series.values[bounds.length]!;
      values.push(
        { value: count, metricName: bucketName, exemplar: null, labels: { le: '+Inf', ...series.labels } },
        {
          value: series.values[bounds.length + 1]!,
          metricName: `${this.name}_sum`,
          exemplar: undefined,
          labels: { ...series.labels },
        },
        { value: count, metricName: `${this.name}_count`, exemplar: undefined, labels: { ...series.labels } },
      );
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      values,
      aggregator: this.aggregator,
    });
  }

  /** Forgets every observation, as prom-client's reset() does: nothing is listed until observed again. */
  reset(): void {
    this.generation += 1;
    this.#listed = [];
  }
}
