/**
 * Supply chain check for CI: `npm audit --omit=dev` over the production dependencies. Any advisory
 * fails unless it is listed in .ci/audit-allowlist.json with its reason (and written down in
 * SECURITY.md). When the registry's advisory endpoint cannot be reached, the check says so loudly
 * and passes, unless --strict is given (use --strict wherever the endpoint is reachable).
 *
 *   node --import tsx scripts/audit.ts [--strict]
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export interface Advisory {
  source?: number;
  name?: string;
  title?: string;
  url?: string;
  severity?: string;
}

/** The parts of `npm audit --json` (report version 2) that matter here. */
export interface AuditReport {
  vulnerabilities?: Record<string, { severity: string; via: (Advisory | string)[] }>;
  statusCode?: number;
  message?: string;
  error?: unknown;
}

/** One advisory that applies to a production dependency. */
export interface Finding {
  package: string;
  url: string;
  title: string;
  severity: string;
}

/** An accepted advisory in .ci/audit-allowlist.json; the reason is also written in SECURITY.md. */
export interface AllowedAdvisory {
  /** The advisory URL, e.g. https://github.com/advisories/GHSA-xxxx-xxxx-xxxx */
  url: string;
  package: string;
  reason: string;
}

const root = fileURLToPath(new URL('..', import.meta.url));

/** Lists every advisory of a report and the ones that are not allowlisted. */
export function classify(
  report: AuditReport,
  allowlist: readonly AllowedAdvisory[],
): { findings: Finding[]; unexpected: Finding[] } {
  const findings: Finding[] = [];
  for (const [name, vulnerability] of Object.entries(report.vulnerabilities ?? {})) {
    for (const via of vulnerability.via) {
      // A string names another vulnerable package this one depends on; that one is listed itself.
      if (typeof via === 'string') continue;
      findings.push({
        package: via.name ?? name,
        url: via.url ?? String(via.source),
        title: via.title ?? '',
        severity: via.severity ?? vulnerability.severity,
      });
    }
  }
  const unexpected = findings.filter(
    (finding) =>
      !allowlist.some((allowed) => allowed.url === finding.url && allowed.package === finding.package),
  );
  return { findings, unexpected };
}

function runAudit(): Promise<string> {
  return new Promise((resolve) => {
    // npm audit exits non-zero when it finds something or fails; the JSON says which.
    execFile(
      'npm',
      ['audit', '--omit=dev', '--json'],
      { cwd: root, maxBuffer: 64 * 1024 * 1024 },
      (_error, stdout) => resolve(stdout),
    );
  });
}

async function main() {
  const { values } = parseArgs({ options: { strict: { type: 'boolean', default: false } } });
  const allowlist = JSON.parse(
    await readFile(new URL('../.ci/audit-allowlist.json', import.meta.url), 'utf8'),
  ) as AllowedAdvisory[];
  const output = await runAudit();
  let report: AuditReport;
  try {
    report = JSON.parse(output) as AuditReport;
  } catch {
    report = { message: `unreadable npm audit output: ${output.slice(0, 200)}`, error: true };
  }

  if (report.vulnerabilities === undefined) {
    const reason = report.message ?? 'no report';
    console.log(`npm audit: the advisory endpoint could not be used (${reason}).`);
    console.log('npm audit: production dependencies were NOT audited in this run.');
    process.exitCode = values.strict ? 1 : 0;
    return;
  }

  const { findings, unexpected } = classify(report, allowlist);
  for (const finding of findings) {
    const allowed = !unexpected.includes(finding);
    console.log(
      `npm audit: ${allowed ? 'allowed' : 'NOT ALLOWED'} ${finding.severity} ${finding.package}: ${finding.title} ${finding.url}`,
    );
  }
  console.log(
    `npm audit: ${findings.length} advisories in production dependencies, ${unexpected.length} not in .ci/audit-allowlist.json`,
  );
  process.exitCode = unexpected.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  await main();
}
