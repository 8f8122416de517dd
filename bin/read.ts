// The read commands' output: human tables, or --json for scripts.

import type { ApiClient } from '../src/node/client.ts'
import { ago, counts, short, table } from './format.ts'

let json = false

/** --json: print what the API answered, as it answered it. */
export function setJson(on: boolean): void {
  json = on
}

export function isJson(): boolean {
  return json
}

export function out(data: unknown, human: () => string): void {
  console.log(json ? JSON.stringify(data, null, 2) : human())
}

export interface JobSummary {
  id: string
  name: string
  group: string | null
  app: string
  state: string
  priority: number
  tasks: number
  counts: Record<string, number>
  waitingOn: string[]
  dependsOn?: string[]
  submittedAt: number
  invalid: number
  frozen: boolean
}

export async function cmdJobs(client: ApiClient): Promise<void> {
  const jobs = await client.get<JobSummary[]>('/v1/jobs')
  out(jobs, () => {
    if (jobs.length === 0) return 'no jobs yet: openfarm submit echo --frames 1-10'
    const rows = jobs.map((j) => [
      j.id,
      j.state,
      String(j.priority),
      `${j.counts.DONE ?? 0}/${j.tasks}`,
      j.app,
      j.group ?? '-',
      j.dependsOn === undefined || j.dependsOn.length === 0 ? '-' : j.dependsOn.join(','),
      j.name,
    ])
    return table(['JOB', 'STATE', 'PRI', 'DONE', 'APP', 'GROUP', 'AFTER', 'NAME'], rows)
  })
}

/** Where a job's outputs come home, as GET /v1/jobs/ID says (null: not to this node). */
type HomeReport = {
  dir: string
  written?: string[]
  conflicts?: string[]
  failed?: { path: string; reason: string }[]
} | null

function outputsLine(job: { outputs: number; home: HomeReport }): string {
  const parts = [`${job.outputs} output(s) recorded`]
  if (job.home !== null) {
    parts.push(`coming home to ${job.home.dir}`)
    if ((job.home.conflicts?.length ?? 0) > 0) {
      parts.push(`${job.home.conflicts!.length} kept as they were (a different file is there)`)
    }
    const failed = job.home.failed ?? []
    if (failed.length > 0) {
      parts.push(`${failed.length} not fetched yet (${failed[0]!.path}: ${failed[0]!.reason}; tried again)`)
    }
  }
  return parts.join(', ')
}

interface TaskView {
  index: number
  state: string
  attempt: number
  owner: string | null
  failures: number
  lastError: string | null
}

export async function showStatus(client: ApiClient, id: string): Promise<void> {
  const hosts = json ? [] : await client.get<{ peer: string; name: string }[]>('/v1/hosts')
  const names = new Map(hosts.map((h) => [h.peer, h.name]))
  const job = await client.get<
    JobSummary & {
      spec: JobSummary & { dependsOn: string[]; frames: { start: number; end: number; step: number } | null }
      tasks: TaskView[]
      held: boolean
      progress: Record<string, { progress?: number; frame?: number }>
      outputs: number
      home: HomeReport
      noHost: string | null
    }
  >(`/v1/jobs/${encodeURIComponent(id)}`)
  out(job, () => {
    const head = [
      `job ${job.id}: ${job.spec.name}`,
      `state ${job.state}, priority ${job.priority}, ${counts(job.counts as Record<string, number>)}`,
      ...(job.waitingOn.length > 0 ? [`waiting on ${job.waitingOn.join(', ')}`] : []),
      ...(job.noHost ? [`no host can run it now: ${job.noHost}`] : []),
      ...(job.invalid > 0 ? [`${job.invalid} malformed entries ignored`] : []),
      ...(job.frozen
        ? ["takes no more events: an entry in its log (another peer's) set its clock to the limit"]
        : []),
      ...(job.spec.dependsOn.length > 0 ? [`depends on ${job.spec.dependsOn.join(', ')}`] : []),
      ...(job.outputs > 0 || job.home !== null ? [outputsLine(job)] : []),
    ]
    const rows = job.tasks.map((t) => {
      const p = t.state === 'RUN' ? job.progress[String(t.index)] : undefined
      const shown =
        p === undefined
          ? ''
          : `${p.frame === undefined ? '' : `frame ${p.frame} `}${p.progress === undefined ? '' : `${Math.round(p.progress * 100)}%`}`
      return [
        String(t.index),
        t.state,
        String(t.attempt),
        t.owner === null ? '-' : (names.get(t.owner) ?? short(t.owner, 16)),
        shown.trim() || '-',
        t.lastError ?? '',
      ]
    })
    const head2 = ['TASK', 'STATE', 'ATTEMPT', 'HOST', 'PROGRESS', 'LAST ERROR']
    return `${head.join('\n')}\n\n${table(head2, rows)}`
  })
}

interface HostView {
  peer: string
  name: string
  self: boolean
  liveness: string
  leftOut?: boolean
  lastSeenMs: number
  slots: number
  free: number
  running: { job: string; task: number }[]
  cores: number
  memoryMb: number
  gpus: { name: string }[]
  apps: { name: string; version: string | null }[]
  appsUnavailable: { name: string; reason: string }[]
  tags: string[]
  speed: number
  speedSource: string
  wattsIdle: number
  wattsLoaded: number
  price: number | null
  currency: string | null
  availability: { available: boolean } | null
}

export async function cmdHosts(client: ApiClient): Promise<void> {
  const hosts = await client.get<HostView[]>('/v1/hosts')
  out(hosts, () => {
    const rows = hosts.map((h) => [
      h.self ? `${h.name} (this)` : h.name,
      short(h.peer, 16),
      h.availability?.available === false
        ? `${h.liveness}, off-hours`
        : h.leftOut === true
          ? `${h.liveness}, left out`
          : h.liveness,
      h.self ? '-' : ago(h.lastSeenMs),
      `${h.free}/${h.slots}`,
      h.running.length === 0
        ? '-'
        : h.running
            .slice(0, 2)
            .map((r) => `${r.job}/${r.task}`)
            .join(' ') + (h.running.length > 2 ? ` +${h.running.length - 2}` : ''),
      `${h.speed.toFixed(2)} (${h.speedSource})`,
      `${h.wattsIdle}/${h.wattsLoaded} W`,
      h.price === null ? 'unknown' : `${h.price}${h.currency ? ` ${h.currency}` : ''}/kWh`,
      `${h.cores} cores, ${(h.memoryMb / 1024).toFixed(1)} GiB${h.gpus.length > 0 ? `, ${h.gpus.length} GPU` : ''}`,
      h.apps.map((a) => (a.version ? `${a.name} ${a.version}` : a.name)).join(', '),
      h.tags.join(',') || '-',
    ])
    const head = [
      'HOST',
      'PEER',
      'STATE',
      'SEEN',
      'FREE',
      'RUNS',
      'SPEED',
      'IDLE/LOAD',
      'PRICE',
      'MACHINE',
      'APPS',
      'TAGS',
    ]
    const notes = hosts.flatMap((h) => [
      ...(h.leftOut === true
        ? [`${h.name}: left out of this node's auction for now: it won tasks and did not claim them`]
        : []),
      ...h.appsUnavailable.map((u) => `${h.name}: ${u.name} not offered: ${u.reason}`),
    ])
    return [table(head, rows), ...(notes.length > 0 ? ['', ...notes] : [])].join('\n')
  })
}

export async function cmdInfo(client: ApiClient): Promise<void> {
  const i = await client.get<{
    peerId: string
    name: string
    farmId: string
    addresses: string[]
    connected: string[]
    jobs: number
    loaded: { updates: number; bytes: number }
    dialErrors: string[]
  }>('/v1/info')
  out(i, () =>
    [
      `${i.name} (${i.peerId}) in farm ${i.farmId}`,
      `replica: ${i.jobs} job(s); ${i.loaded.updates} update(s), ${i.loaded.bytes} bytes loaded from disk at start`,
      `connected to ${i.connected.length} peer(s)`,
      'addresses (for --bootstrap):',
      ...i.addresses.map((a) => `  ${a}`),
      ...i.dialErrors.map((e) => `dial error: ${e}`),
    ].join('\n'),
  )
}
