// Self-tests at start: a host advertises an application only after a tiny real job of it worked here
// (Blender: a 32x18 Cycles render on the CPU, then on each GPU backend Cycles reports; ffmpeg: a
// two-frame H.264 encode counted by ffprobe). A failure comes back as one line saying why.

import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type AppDef, appTitle } from './apps.ts'
import type { CyclesDevice } from './argv.ts'
import { findOnPath } from './detect.ts'
import { runPhase } from './execute.ts'
import { checkOutputs } from './outputs.ts'
import { clockSeconds } from './progress.ts'

export interface DeviceSpeed {
  readonly type: CyclesDevice
  readonly name?: string
  /** Render time of the self-test frame on it (Blender's own timing, saving excluded). */
  readonly secondsPerFrame: number
}

export type SelfTestResult =
  | {
      readonly ok: true
      /** Blender: the Cycles devices that rendered the test frame, CPU first. */
      readonly devices?: readonly DeviceSpeed[]
      /** GPU backends Cycles reported that failed the test render, each with why. */
      readonly problems?: readonly string[]
      /** Blender: what this build can do that a scene may need ('oidn': OpenImageDenoise). */
      readonly features?: readonly BlenderFeature[]
    }
  | { readonly ok: false; readonly reason: string }

export type BlenderFeature = 'oidn'

/** The tag a host announces for a feature of an app's build, found by its self-test: `blender:oidn`. */
export const featureTag = (app: string, feature: BlenderFeature): string => `${app}:${feature}`

export interface SelfTestOptions {
  /** A directory to work in; the test uses (and removes) a fresh directory under it. */
  readonly workDir: string
  readonly signal?: AbortSignal
}

/** What detectApp found: the binary to test. */
export interface Detected {
  readonly path: string | null
  readonly version: string | null
}

const BLENDER_SCRIPT = fileURLToPath(new URL('./blender/selftest.py', import.meta.url))
const DEFAULT_TIMEOUT_MS = 60_000

/** Runs the app's self-test (apps without one pass); never throws for a failing binary. */
export async function selfTestApp(
  app: AppDef,
  detected: Detected,
  opts: SelfTestOptions,
): Promise<SelfTestResult> {
  const kind = app.selfTest?.kind
  if (kind === undefined) return { ok: true }
  if (detected.path === null) return { ok: false, reason: `${appTitle(app)} was not found on this host` }
  const dir = await mkdtemp(join(opts.workDir, `selftest-${app.name}-`))
  const ctx: Ctx = {
    app,
    command: detected.path,
    dir,
    signal: opts.signal ?? new AbortController().signal,
    timeoutMs: app.selfTest?.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  }
  try {
    return kind === 'blender' ? await blenderTest(ctx) : await ffmpegTest(ctx)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

interface Ctx {
  readonly app: AppDef
  readonly command: string
  readonly dir: string
  readonly signal: AbortSignal
  readonly timeoutMs: number
}

async function run(ctx: Ctx, argv: string[]) {
  const lines: string[] = []
  const result = await runPhase(argv, {
    cwd: ctx.dir,
    env: { TMPDIR: ctx.dir },
    signal: ctx.signal,
    timeoutMs: ctx.timeoutMs,
    killGraceMs: 1000,
    onLine: (_stream, line) => {
      if (lines.length < 2000) lines.push(line)
    },
  })
  return { result, lines }
}

async function blenderTest(ctx: Ctx): Promise<SelfTestResult> {
  const cpu = await blenderRender(ctx, 'CPU')
  if (!cpu.ok) return { ok: false, reason: `self-test render on CPU: ${cpu.reason}` }
  const devices: DeviceSpeed[] = [{ type: 'CPU', secondsPerFrame: cpu.seconds }]
  const problems: string[] = []
  for (const type of new Set(cpu.gpus.map((g) => g.type))) {
    const gpu = await blenderRender(ctx, type)
    const name = cpu.gpus.find((g) => g.type === type)?.name
    if (gpu.ok) devices.push({ type, ...(name === undefined ? {} : { name }), secondsPerFrame: gpu.seconds })
    else problems.push(`${type}: ${gpu.reason}`)
  }
  return {
    ok: true,
    devices,
    ...(problems.length === 0 ? {} : { problems }),
    ...(cpu.features.length === 0 ? {} : { features: cpu.features }),
  }
}

type Render =
  | { ok: true; seconds: number; gpus: { type: CyclesDevice; name: string }[]; features: BlenderFeature[] }
  | { ok: false; reason: string }

async function blenderRender(ctx: Ctx, device: CyclesDevice): Promise<Render> {
  const out = join(ctx.dir, device.toLowerCase())
  const argv = [
    ctx.command,
    '-b',
    '--factory-startup',
    '-Y',
    '--python-exit-code',
    '1',
    '--python',
    BLENDER_SCRIPT,
  ]
  argv.push(
    '-o',
    `${out}/frame_####`,
    '-F',
    'PNG',
    '-x',
    '1',
    '-t',
    '0',
    '-f',
    '1',
    '--',
    '--cycles-device',
    device,
  )
  if (device !== 'CPU') argv.push('--gpu')
  const started = performance.now()
  const { result, lines } = await run(ctx, argv)
  const check = await checkOutputs(ctx.app, lines, [1], out)
  if (!result.ok)
    return { ok: false, reason: [result.reason, check.reason].filter((r) => r !== null).join('; ') }
  if (!check.ok) return { ok: false, reason: check.reason ?? 'no output' }
  const wall = (performance.now() - started) / 1000
  return { ok: true, seconds: renderSeconds(lines) ?? wall, gpus: gpusOf(lines), features: featuresOf(lines) }
}

function featuresOf(lines: readonly string[]): BlenderFeature[] {
  const line = lines.find((l) => l.startsWith('OPENFARM-FEATURES '))
  if (line === undefined) return []
  try {
    const o = JSON.parse(line.slice('OPENFARM-FEATURES '.length)) as { oidn?: unknown }
    return o.oidn === true ? ['oidn'] : []
  } catch {
    return []
  }
}

const GPU_TYPES: readonly string[] = ['CUDA', 'OPTIX', 'HIP']

function gpusOf(lines: readonly string[]): { type: CyclesDevice; name: string }[] {
  const line = lines.find((l) => l.startsWith('OPENFARM-DEVICES '))
  if (line === undefined) return []
  try {
    const list = JSON.parse(line.slice('OPENFARM-DEVICES '.length)) as { type?: unknown; name?: unknown }[]
    return list
      .filter((d) => GPU_TYPES.includes(String(d.type)) && typeof d.name === 'string')
      .map((d) => ({ type: d.type as CyclesDevice, name: (d.name as string).slice(0, 100) }))
  } catch {
    return []
  }
}

const TIME_RE = /^ Time: ((?:\d+:)?\d+:\d+(?:\.\d+)?) \(Saving: ((?:\d+:)?\d+:\d+(?:\.\d+)?)\)/

/** Blender's ' Time: 00:00.22 (Saving: 00:00.15)' as seconds of rendering (saving excluded). */
export function renderSeconds(lines: readonly string[]): number | null {
  for (const line of lines) {
    const m = TIME_RE.exec(line)
    if (m !== null) return Math.max(0, Math.round((clockSeconds(m[1]!) - clockSeconds(m[2]!)) * 1000) / 1000)
  }
  return null
}

async function ffmpegTest(ctx: Ctx): Promise<SelfTestResult> {
  const video = join(ctx.dir, 'out', 'selftest.mp4')
  const argv = [
    ctx.command,
    '-v',
    'error',
    '-nostdin',
    '-y',
    '-f',
    'lavfi',
    '-i',
    'testsrc=size=32x18:rate=2',
  ]
  argv.push('-frames:v', '2', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', video)
  await mkdir(join(ctx.dir, 'out'))
  const enc = await run(ctx, argv)
  if (!enc.result.ok) return { ok: false, reason: `self-test encode: ${enc.result.reason}` }
  const check = await checkOutputs(ctx.app, enc.lines, [], join(ctx.dir, 'out'))
  if (!check.ok) return { ok: false, reason: `self-test encode: ${check.reason}` }
  const ffprobe =
    (await findOnPath(join(dirname(ctx.command), 'ffprobe'), '')) ??
    (await findOnPath('ffprobe', process.env.PATH ?? ''))
  if (ffprobe === null)
    return { ok: false, reason: 'self-test: ffprobe not found (next to ffmpeg or on PATH)' }
  const probe = await run(
    ctx,
    [ffprobe, '-v', 'error', '-count_frames', '-select_streams', 'v:0'].concat([
      '-show_entries',
      'stream=nb_read_frames',
      '-of',
      'csv=p=0',
      video,
    ]),
  )
  const frames = probe.lines.find((l) => /^\d+$/.test(l.trim()))?.trim()
  if (!probe.result.ok || frames !== '2') {
    return {
      ok: false,
      reason: `self-test encode: ffprobe counts ${frames ?? 'no'} frames, not 2 (${probe.result.reason ?? 'ok'})`,
    }
  }
  return { ok: true }
}
