// `openfarm submit`'s flags -> the submit body the node's API takes. Only parsing: the node
// validates (and says what is wrong) when it compiles the job.

import { resolve } from 'node:path'

export class SubmitUsageError extends Error {
  static override readonly name = 'UsageError'
  override readonly name = 'UsageError'
}

export interface SubmitFlags {
  name?: string | undefined
  group?: string | undefined
  frames?: string | undefined
  chunk?: string | undefined
  priority?: string | undefined
  'max-retries'?: string | undefined
  'depends-on'?: string[] | undefined
  'depends-on-frames'?: string[] | undefined
  set?: string[] | undefined
  prefer?: string | undefined
  slack?: string | undefined
  weights?: string | undefined
  requires?: string[] | undefined
  'app-version'?: string | undefined
  license?: string | undefined
  'not-before'?: string | undefined
  'wait-file'?: string | undefined
  manual?: boolean | undefined
}

function num(flag: string, text: string): number {
  const n = Number(text)
  if (!Number.isFinite(n)) throw new SubmitUsageError(`--${flag} takes a number, not ${JSON.stringify(text)}`)
  return n
}

function pair(flag: string, kv: string): [string, string] {
  const i = kv.indexOf('=')
  if (i <= 0) throw new SubmitUsageError(`--${flag} takes KEY=VALUE, not ${JSON.stringify(kv)}`)
  return [kv.slice(0, i).trim(), kv.slice(i + 1).trim()]
}

/** `--requires tag=a,memory=8192`: comma-separated pairs, the flag repeatable. */
function pairs(flag: string, items: readonly string[]): [string, string][] {
  return items.flatMap((item) => item.split(',').map((kv) => pair(flag, kv)))
}

/** '2026-11-24T02:00', an epoch in ms, or '+30m' / '+2h' / '+90s' from now. */
export function parseWhen(text: string, now: number): number {
  const rel = /^\+(\d+(?:\.\d+)?)([smhd])$/.exec(text)
  if (rel) return Math.round(now + Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as 's']!)
  const t = /^\d+$/.test(text) ? Number(text) : Date.parse(text)
  if (!Number.isFinite(t))
    throw new SubmitUsageError(`--not-before takes a time (2026-11-24T02:00 or +30m), not ${text}`)
  return t
}

export function submitBody(app: string, f: SubmitFlags, now: number): Record<string, unknown> {
  // one setting per --set, its value whole: a value may hold commas (the command application's argv
  // is a JSON array: --set argv=["make","-j4"])
  const settings = Object.fromEntries((f.set ?? []).map((kv) => pair('set', kv)))
  const requires: { tags: string[]; memoryMb?: number; gpus?: number } = { tags: [] }
  let appVersion = f['app-version']
  for (const [k, v] of pairs('requires', f.requires ?? [])) {
    if (k === 'tag') requires.tags.push(v)
    else if (k === 'memory') requires.memoryMb = num('requires memory', v)
    else if (k === 'gpu') requires.gpus = num('requires gpu', v)
    else if (k === 'app') appVersion = v
    else
      throw new SubmitUsageError(`--requires knows tag=, memory= (MiB), gpu= and app= (version), not ${k}=`)
  }
  let policy: unknown = f.prefer
  if (f.weights !== undefined) {
    const w = Object.fromEntries(pairs('weights', [f.weights]))
    policy = {
      kind: 'weights',
      time: num('weights time', w.time ?? '1'),
      cost: num('weights cost', w.cost ?? '1'),
    }
  }
  const opt = <T>(key: string, v: T | undefined) => (v === undefined ? {} : { [key]: v })
  return {
    app,
    ...opt('name', f.name),
    ...opt('group', f.group),
    ...opt('frames', f.frames),
    ...opt('chunk', f.chunk === undefined ? undefined : num('chunk', f.chunk)),
    ...opt('priority', f.priority === undefined ? undefined : num('priority', f.priority)),
    ...opt('maxRetries', f['max-retries'] === undefined ? undefined : num('max-retries', f['max-retries'])),
    dependsOn: f['depends-on'] ?? [],
    taskDeps: f['depends-on-frames'] ?? [],
    settings,
    ...opt('policy', policy),
    ...opt('slack', f.slack === undefined ? undefined : num('slack', f.slack)),
    requires,
    ...opt('appVersion', appVersion),
    ...opt('license', f.license),
    ...opt('notBefore', f['not-before'] === undefined ? undefined : parseWhen(f['not-before'], now)),
    ...opt('waitFile', f['wait-file'] === undefined ? undefined : resolve(f['wait-file'])),
    ...opt('manual', f.manual ? true : undefined),
  }
}
