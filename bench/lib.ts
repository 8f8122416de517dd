// Small helpers shared by the benchmarks: cleanup registry, temp dirs, sizes, percentiles, a table,
// and starting real nodes on loopback.

import { execFile } from 'node:child_process'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { JobView } from '../src/crdt/jobview.ts'
import type { FarmKey } from '../src/node/farmkey.ts'
import { type RunningNode, type ServeOptions, serve } from '../src/node/serve.ts'

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Things to undo at the end, newest first, each bounded in time so the bench always exits. */
export class Cleanup {
  private readonly steps: { what: string; run: () => Promise<unknown> }[] = []

  add(what: string, run: () => Promise<unknown>): () => Promise<void> {
    const step = { what, run }
    this.steps.push(step)
    return async () => {
      const i = this.steps.indexOf(step)
      if (i >= 0) this.steps.splice(i, 1)
      await bounded(what, run())
    }
  }

  async runAll(): Promise<void> {
    while (this.steps.length > 0) {
      const step = this.steps.pop()!
      await bounded(step.what, step.run()).catch((err) =>
        console.error(`cleanup: ${step.what} failed: ${(err as Error).message}`),
      )
    }
  }
}

async function bounded(what: string, p: Promise<unknown>, ms = 15_000): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<void>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still running after ${ms} ms`)), ms)
  })
  try {
    await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export async function tempDir(cleanup: Cleanup, prefix: string): Promise<string> {
  const path = await mkdtemp(join(tmpdir(), `openfarm-bench-${prefix}-`))
  cleanup.add(`remove ${path}`, () => rm(path, { recursive: true, force: true }))
  return path
}

/** Sum of the sizes of the files under `dir`. */
export async function dirBytes(dir: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size
  }
  return total
}

/** Nearest-rank percentile of unsorted samples (p in 0..1). */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!
}

/** The median (for an even count, the lower of the two middle samples). */
export const median = (samples: readonly number[]): number => percentile(samples, 0.5)

export const round = (x: number, digits = 2): number => {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Polls `probe` every `stepMs` until it is truthy; throws after `timeoutMs`. */
export async function waitUntil(
  what: string,
  probe: () => boolean,
  timeoutMs = 30_000,
  stepMs = 2,
): Promise<void> {
  const end = performance.now() + timeoutMs
  while (!probe()) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(stepMs)
  }
}

export type Row = readonly [string, string, string?]

export class Table {
  readonly rows: (Row | string)[] = []
  section(title: string): void {
    this.rows.push(title)
  }
  row(name: string, value: string | number, note = ''): void {
    this.rows.push([name, typeof value === 'number' ? fmt(value) : value, note])
  }
  print(): void {
    const w0 = Math.max(...this.rows.map((r) => (typeof r === 'string' ? 0 : r[0].length)))
    const w1 = Math.max(...this.rows.map((r) => (typeof r === 'string' ? 0 : r[1].length)))
    for (const r of this.rows) {
      if (typeof r === 'string') console.log(`\n== ${r}`)
      else console.log(`  ${r[0].padEnd(w0)}  ${r[1].padStart(w1)}  ${r[2] ?? ''}`.trimEnd())
    }
  }
}

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x)
  if (Number.isInteger(x)) return x.toLocaleString('en-US')
  return x.toLocaleString('en-US', { maximumFractionDigits: 2, minimumFractionDigits: 2 })
}

export const ms = (x: number) => `${fmt(round(x, 1))} ms`

export const kb = (bytes: number) => `${fmt(round(bytes / 1024, 1))} KiB`

/** A real node on loopback, no mDNS; the rest of the options as given. */
export async function startNode(
  cleanup: Cleanup,
  dataDir: string,
  name: string,
  key: FarmKey,
  opts: Partial<ServeOptions> & { disable?: string[] } = {},
): Promise<RunningNode & { stopNow: () => Promise<void> }> {
  const { disable = [], ...rest } = opts
  const node = await serve({
    dataDir,
    key,
    configFile: null,
    flags: { name, speed: '1', disableApps: disable },
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    ...rest,
  })
  const stopNow = cleanup.add(`stop node ${name}`, () => node.stop())
  return Object.assign(node, { stopNow })
}

/** One attempt on its worker, as its log store recorded it (wall-clock milliseconds). */
export interface AttemptSpan {
  readonly start: number
  readonly end: number
}

/** Each worker's attempts of a finished job, in the order they started. */
export async function workerSpans(workers: readonly RunningNode[], job: JobView): Promise<AttemptSpan[][]> {
  const all: AttemptSpan[][] = []
  for (const worker of workers) {
    const spans: AttemptSpan[] = []
    for (const task of job.tasks) {
      if (task.owner !== worker.node.peerId) continue
      const ref = { job: job.id, task: task.index, attempt: task.attempt }
      const s = await worker.node.logStore.status(ref)
      if (s?.end === undefined) throw new Error(`no log of the end of task ${task.index} on its worker`)
      spans.push({ start: s.started, end: s.end.t })
    }
    all.push(spans.sort((a, b) => a.start - b.start))
  }
  return all
}

/**
 * Each worker's gaps between its attempts of a finished job: the end of one (its outputs published,
 * as its log store recorded it) -> the start of the next (before its inputs are fetched). That spans
 * all the farm does between two runs on one host: the end recorded, the next task placed (or its
 * claim made ahead) and started. Below 0 where the next one started in the slot its processes freed,
 * while its outputs were still being published. Log times are wall-clock milliseconds.
 */
export async function workerGaps(workers: readonly RunningNode[], job: JobView): Promise<number[]> {
  return gapsOf(await workerSpans(workers, job))
}

/** workerGaps of spans already read. */
export function gapsOf(perWorker: readonly (readonly AttemptSpan[])[]): number[] {
  const gaps: number[] = []
  for (const spans of perWorker) {
    for (let i = 1; i < spans.length; i++) gaps.push(spans[i]!.start - spans[i - 1]!.end)
  }
  return gaps
}

export const addrOf = (n: RunningNode): string => n.node.addresses()[0]!

/** How many hosts `n` hears alive, itself included. */
export const aliveHosts = (n: RunningNode): number =>
  n.node.hosts().filter((h) => h.liveness === 'alive').length

/** Waits until every node hears every node of `nodes` alive (the farm has formed). */
export async function waitFormed(nodes: readonly RunningNode[], timeoutMs = 20_000): Promise<void> {
  await waitUntil(
    `the farm of ${nodes.length} to form`,
    () => nodes.every((n) => aliveHosts(n) === nodes.length),
    timeoutMs,
    50,
  )
}

/** Runs bench/load-child.ts in a fresh node process and returns the JSON it prints last. */
export async function loadInChild(dbPath: string, jobIds: readonly string[]): Promise<LoadReport> {
  const child = join(REPO, 'bench', 'load-child.ts')
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', child, dbPath, ...jobIds],
    { cwd: REPO, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
  )
  const last = stdout.trim().split('\n').at(-1) ?? ''
  return JSON.parse(last) as LoadReport
}

export interface LoadReport {
  readonly gcExposed: boolean
  readonly baselineRssMb: number
  readonly rssMb: number
  readonly heapUsedMb: number
  readonly openMs: number
  readonly viewsMs: number
  readonly loadMs: number
  readonly updates: number
  readonly jobs: number
  readonly events: number
  readonly doneTasks: number
}
