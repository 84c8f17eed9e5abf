import type { LoadResult } from './load.js';

/** Medians of several runs of one server on one case. */
export interface Summary {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** Median server CPU time per request, in microseconds. */
  cpuMicrosPerRequest: number;
  /** Median share of the server's CPU time spent in the kernel (0 to 1). */
  systemShare: number;
  runs: LoadResult[];
}

/** Peak memory of the digestd process tree during a case's runs. */
export interface MemoryPeak {
  rssBytes: number;
  rssAnonBytes: number;
  /** Undefined when the probe never reported (heap not measured). */
  heapUsedBytes: number | undefined;
}

/** One row of the results: a scenario at a store size and worker setting, with one tool. */
export interface CaseResult {
  storeSize: number;
  workers: string;
  scenario: string;
  tool: 'autocannon' | 'wrk';
  digestd: Summary & { memory: MemoryPeak };
  baseline: Summary | undefined;
  /** digestd's median requests/s over the baseline's. */
  ratio: number | undefined;
  /** nginx serving the same answers from static files; undefined for scenarios that POST. */
  nginx: Summary | undefined;
  /** digestd's median requests/s over nginx's. */
  nginxRatio: number | undefined;
}

/** The median of a non-empty list. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? 0)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/** Summarizes runs by their medians. */
export function summarize(runs: LoadResult[]): Summary {
  return {
    requestsPerSecond: median(runs.map((run) => run.requestsPerSecond)),
    p50Ms: median(runs.map((run) => run.p50Ms)),
    p99Ms: median(runs.map((run) => run.p99Ms)),
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    cpuMicrosPerRequest: median(runs.map((run) => run.serverCpuMicrosPerRequest)),
    systemShare: median(runs.map((run) => run.serverSystemShare)),
    runs,
  };
}

const MiB = 1024 * 1024;
const number = (value: number) => Math.round(value).toLocaleString('en-US');
const milliseconds = (value: number) => value.toFixed(value < 10 ? 2 : 1);
/** A share (0 to 1) as a whole percentage. */
export const percent = (share: number) => `${Math.round(share * 100)}%`;

/** The results as a Markdown table, printed at the end of a run (docs/benchmarks.md holds one). */
export function markdownTable(results: readonly CaseResult[]): string {
  const showStore = new Set(results.map((result) => result.storeSize)).size > 1;
  const showTool = new Set(results.map((result) => result.tool)).size > 1;
  const showNginx = results.some((result) => result.nginx);
  const header = [
    ...(showStore ? ['stored'] : []),
    'workers',
    'scenario',
    ...(showTool ? ['tool'] : []),
    'digestd req/s',
    'p50 ms',
    'p99 ms',
    'baseline req/s',
    'p50 ms',
    'p99 ms',
    'ratio',
    ...(showNginx ? ['nginx req/s', 'p99 ms', 'vs nginx'] : []),
    'CPU µs/req',
    'in kernel',
    'RSS MiB',
    'heap MiB',
  ];
  const rows = results.map((result) => [
    ...(showStore ? [number(result.storeSize)] : []),
    result.workers,
    result.scenario,
    ...(showTool ? [result.tool] : []),
    number(result.digestd.requestsPerSecond) +
      (result.digestd.errors > 0 ? ` (${result.digestd.errors} errors)` : ''),
    milliseconds(result.digestd.p50Ms),
    milliseconds(result.digestd.p99Ms),
    result.baseline ? number(result.baseline.requestsPerSecond) : '-',
    result.baseline ? milliseconds(result.baseline.p50Ms) : '-',
    result.baseline ? milliseconds(result.baseline.p99Ms) : '-',
    result.ratio === undefined ? '-' : `${result.ratio.toFixed(2)}x`,
    ...(showNginx
      ? [
          result.nginx ? number(result.nginx.requestsPerSecond) : '-',
          result.nginx ? milliseconds(result.nginx.p99Ms) : '-',
          result.nginxRatio === undefined ? '-' : `${result.nginxRatio.toFixed(2)}x`,
        ]
      : []),
    `${result.digestd.cpuMicrosPerRequest.toFixed(0)}${result.baseline ? ` / ${result.baseline.cpuMicrosPerRequest.toFixed(0)}` : ''}`,
    `${percent(result.digestd.systemShare)}${result.baseline ? ` / ${percent(result.baseline.systemShare)}` : ''}`,
    (result.digestd.memory.rssBytes / MiB).toFixed(0),
    result.digestd.memory.heapUsedBytes === undefined
      ? '-'
      : (result.digestd.memory.heapUsedBytes / MiB).toFixed(0),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell, column) => (column < (showStore ? 3 : 2) + (showTool ? 1 : 0) ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join(' | ')} |`;
  const separator = `|${widths.map((width, column) => (column < (showStore ? 3 : 2) + (showTool ? 1 : 0) ? `-${'-'.repeat(width)}-` : `-${'-'.repeat(width)}:`)).join('|')}|`;
  return [line(header), separator, ...rows.map(line)].join('\n');
}

/** What each column of markdownTable means, for the columns these results show. */
export function columnLegend(results: readonly CaseResult[]): string {
  const showNginx = results.some((result) => result.nginx);
  const lines = [
    'Columns (each figure the median of the measured runs):',
    '  req/s             answers per second with the expected status',
    '  p50 ms, p99 ms    latency that half, and all but 1 in 100, of the requests stayed under',
    '  baseline          a bare node:https server with the messages in a Map (bench/baseline.ts)',
    '  ratio             digestd req/s divided by baseline req/s',
    ...(showNginx
      ? ['  nginx, vs nginx   nginx serving the same answers from static files (GETs only); digestd / nginx']
      : []),
    "  CPU µs/req        CPU time (user + kernel) of all the server's processes per request: digestd / baseline",
    '  in kernel         the share of that CPU time spent in the kernel (TLS sockets, fsync): digestd / baseline',
    "  RSS MiB, heap MiB digestd's peak resident memory and V8 heap in use, over all its processes",
  ];
  return lines.join('\n');
}

const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * A horizontal bar chart of requests/s by scenario: for each scenario one bar per server and
 * worker setting (and store size, when several). Plain SVG, no script, no external fonts.
 */
export function throughputChart(results: readonly CaseResult[], subtitle: string): string {
  const tool = results[0]?.tool;
  const rows = results.filter((result) => result.tool === tool);
  const groups = [...new Set(rows.map((result) => result.scenario))];
  const series: {
    label: string;
    color: string;
    value: (result: CaseResult) => number | undefined;
    storeSize: number;
    workers: string;
  }[] = [];
  const palette = [
    ['#1f77b4', '#aec7e8', '#0b3c5d'],
    ['#d62728', '#ff9896', '#67000d'],
    ['#2ca02c', '#98df8a', '#00441b'],
    ['#9467bd', '#c5b0d5', '#3f007d'],
  ];
  const showNginx = rows.some((result) => result.nginx);
  const settings = [
    ...new Map(rows.map((result) => [`${result.storeSize}|${result.workers}`, result])).values(),
  ];
  const showStore = new Set(rows.map((result) => result.storeSize)).size > 1;
  settings.forEach((setting, index) => {
    const [strong = '#333', light = '#999', dark = '#000'] = palette[index % palette.length] ?? [];
    const suffix = `workers ${setting.workers}${showStore ? `, ${number(setting.storeSize)} stored` : ''}`;
    const matches = (result: CaseResult) =>
      result.storeSize === setting.storeSize && result.workers === setting.workers;
    series.push({
      label: `digestd, ${suffix}`,
      color: strong,
      storeSize: setting.storeSize,
      workers: setting.workers,
      value: (result) => (matches(result) ? result.digestd.requestsPerSecond : undefined),
    });
    series.push({
      label: `baseline, ${suffix}`,
      color: light,
      storeSize: setting.storeSize,
      workers: setting.workers,
      value: (result) => (matches(result) ? result.baseline?.requestsPerSecond : undefined),
    });
    if (showNginx)
      series.push({
        label: `nginx, ${suffix}`,
        color: dark,
        storeSize: setting.storeSize,
        workers: setting.workers,
        value: (result) => (matches(result) ? result.nginx?.requestsPerSecond : undefined),
      });
  });
  const maximum = Math.max(
    1,
    ...rows.flatMap((result) => [
      result.digestd.requestsPerSecond,
      result.baseline?.requestsPerSecond ?? 0,
      result.nginx?.requestsPerSecond ?? 0,
    ]),
  );
  const barHeight = 12;
  const groupGap = 14;
  const left = 110;
  const plotWidth = 560;
  const top = 58;
  const groupHeight = series.length * barHeight + groupGap;
  const legendTop = top + groups.length * groupHeight + 24;
  const height = legendTop + Math.ceil(series.length / 2) * 18 + 10;
  const width = left + plotWidth + 110;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${left}" y="20" font-size="15" font-weight="bold">Requests per second by scenario (median, ${escapeXml(tool ?? '')})</text>`,
    `<text x="${left}" y="38" fill="#555">${escapeXml(subtitle)}</text>`,
  ];
  const ticks = 5;
  const step = niceStep(maximum / ticks);
  for (let tick = 0; tick * step <= maximum * 1.001; tick++) {
    const x = left + ((tick * step) / maximum) * plotWidth;
    parts.push(
      `<line x1="${x.toFixed(1)}" y1="${top - 6}" x2="${x.toFixed(1)}" y2="${legendTop - 18}" stroke="#e5e5e5"/>`,
    );
    parts.push(
      `<text x="${x.toFixed(1)}" y="${legendTop - 6}" text-anchor="middle" fill="#555">${number(tick * step)}</text>`,
    );
  }
  groups.forEach((scenario, groupIndex) => {
    const groupTop = top + groupIndex * groupHeight;
    parts.push(
      `<text x="${left - 8}" y="${groupTop + (series.length * barHeight) / 2 + 4}" text-anchor="end">${escapeXml(scenario)}</text>`,
    );
    series.forEach((entry, seriesIndex) => {
      const result = rows.find(
        (row) =>
          row.scenario === scenario && row.storeSize === entry.storeSize && row.workers === entry.workers,
      );
      const value = result && entry.value(result);
      if (value === undefined) return;
      const y = groupTop + seriesIndex * barHeight;
      const barWidth = (value / maximum) * plotWidth;
      parts.push(
        `<rect x="${left}" y="${y}" width="${barWidth.toFixed(1)}" height="${barHeight - 2}" fill="${entry.color}"><title>${escapeXml(`${entry.label}: ${number(value)} req/s`)}</title></rect>`,
      );
      parts.push(
        `<text x="${(left + barWidth + 4).toFixed(1)}" y="${y + barHeight - 3}" fill="#333" font-size="9">${number(value)}</text>`,
      );
    });
  });
  series.forEach((entry, index) => {
    const x = left + (index % 2) * 300;
    const y = legendTop + Math.floor(index / 2) * 18;
    parts.push(`<rect x="${x}" y="${y}" width="12" height="12" fill="${entry.color}"/>`);
    parts.push(`<text x="${x + 18}" y="${y + 10}">${escapeXml(entry.label)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function niceStep(raw: number): number {
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}
