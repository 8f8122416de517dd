// Detects an application on this host: finds its command on PATH (no shell, no `which`) and, if the
// app says how, runs it once to read its version. Hosts advertise the result in their heartbeat.

import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, isAbsolute, join, resolve } from 'node:path'
import type { AppDef } from './apps.ts'
import { runPhase } from './execute.ts'

export interface DetectResult {
  readonly available: boolean
  readonly version: string | null
  readonly path: string | null
  readonly reason: string | null
}

export interface DetectOptions {
  /** Where PATH comes from, and the environment of the version check; default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>
  readonly signal?: AbortSignal
  /** Limit for the version check; default 10 s. */
  readonly timeoutMs?: number
}

const VERSION_LINES = 50
const VERSION_CHARS = 100

/** Whether the app can run here, where, and which version. */
export async function detectApp(app: AppDef, opts: DetectOptions = {}): Promise<DetectResult> {
  if (app.detect === null) return { available: true, version: null, path: null, reason: null }
  const env = opts.env ?? process.env
  const { command, versionArgs, versionPattern } = app.detect
  const path = await findOnPath(command, env.PATH ?? '')
  if (path === null)
    return { available: false, version: null, path: null, reason: `command not found: ${command}` }
  if (versionArgs === undefined) return { available: true, version: null, path, reason: null }

  const lines: string[] = []
  const result = await runPhase([path, ...versionArgs], {
    cwd: tmpdir(),
    env: definedOnly(env),
    signal: opts.signal ?? new AbortController().signal,
    timeoutMs: opts.timeoutMs ?? 10_000,
    killGraceMs: 1000,
    maxLineChars: 1000,
    onLine: (_stream, line) => {
      if (lines.length < VERSION_LINES) lines.push(line)
    },
  })
  if (!result.ok)
    return { available: false, version: null, path, reason: `version check failed: ${result.reason}` }
  const text = lines.join('\n')
  if (versionPattern === undefined) {
    const first = lines.find((l) => l.trim() !== '')?.trim() ?? null
    return { available: true, version: first?.slice(0, VERSION_CHARS) ?? null, path, reason: null }
  }
  const m = new RegExp(versionPattern, 'm').exec(text)
  if (m === null) {
    return {
      available: true,
      version: null,
      path,
      reason: `no version matching /${versionPattern}/ in its output`,
    }
  }
  return { available: true, version: (m[1] ?? m[0]).slice(0, VERSION_CHARS), path, reason: null }
}

/** The executable file `command` resolves to: a path if it holds a '/', else the first match on PATH. */
export async function findOnPath(command: string, pathVar: string): Promise<string | null> {
  if (command === '') return null
  if (command.includes('/')) return (await isExecutable(command)) ? resolve(command) : null
  for (const dir of pathVar.split(delimiter)) {
    // An empty or relative PATH entry means "relative to the cwd": never trust that for a farm app.
    if (dir === '' || !isAbsolute(dir)) continue
    const candidate = join(dir, command)
    if (await isExecutable(candidate)) return candidate
  }
  return null
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    const s = await stat(file)
    if (!s.isFile()) return false
    await access(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

function definedOnly(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v
  return out
}
