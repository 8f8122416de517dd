// Renders a phase's argv for one task. Each template element becomes one argv element (a value with
// spaces or shell syntax stays one element, and is never read by a shell); substitution is one pass,
// so a value holding '{first}' stays literal. Only '{...name}' of an argv-format setting splices, and
// the runner's own {...stitch}. Runner placeholders ({scene}, {outdir}, ...) come from the RunContext
// the worker gives, or ({border}) from the task's place in the job, never from a job's text.

import { isAbsolute, join, relative, resolve, sep } from 'node:path'
import { type JobSpec, taskFrames, taskTile } from '../crdt/schema.ts'
import type { AppDef, PhaseDef } from './apps.ts'
import {
  borderArg,
  frameFileName,
  stitchArgv,
  type Tile,
  tileGrid,
  tilePath,
  tileRect,
  tilesOf,
} from './blender/tiles.ts'
import { InvalidTemplateError } from './errors.ts'
import { argvOfSetting, type SettingValue, validateSettings } from './settings.ts'
import { parseElement, RUNNER_PLACEHOLDERS, RUNNER_SPLICES, type TemplatePart } from './template.ts'

/** Where Cycles renders: the CPU or one GPU backend. */
export type CyclesDevice = 'CPU' | 'CUDA' | 'OPTIX' | 'HIP'
export const CYCLES_DEVICES: readonly CyclesDevice[] = ['CPU', 'CUDA', 'OPTIX', 'HIP']

/**
 * Where and how the worker runs a task: `<workdir>/in/` holds the inputs in the scene's relative
 * layout, `<workdir>/out/` receives the outputs, `<workdir>/tmp/` is TMPDIR.
 */
export interface RunContext {
  /** Absolute path of the main file inside indir; default: indir joined with the `scene` setting. */
  readonly scene?: string
  readonly indir: string
  readonly outdir: string
  readonly workdir: string
  /** Threads the task may use (Blender's -t). */
  readonly threads: number
  readonly device: CyclesDevice
  /** The directory of the app's config (its shipped scripts); default the app's own `dir`. */
  readonly appdir?: string
}

/**
 * The argv of `phase` for task `taskIndex` of `spec`, and the environment its process gets besides
 * the node's (the phase's `env`, filled like its argv), with runner placeholders from `ctx`; the
 * settings are checked and the placeholders' values made once for both. Throws
 * InvalidTemplateError or InvalidSettingsError.
 */
export function renderPhase(
  app: AppDef,
  phase: PhaseDef,
  spec: JobSpec,
  taskIndex: number,
  ctx?: RunContext,
): { argv: string[]; env: Record<string, string> } {
  const { settings, values } = phaseValues(app, spec, taskIndex, ctx)
  const argv: string[] = []
  for (const element of phase.argv) {
    const parsed = parseElement(element)
    if (parsed.kind === 'splice' && RUNNER_SPLICES.includes(parsed.name)) {
      argv.push(...stitchSplice(spec, taskIndex, settings, ctx))
      continue
    }
    if (parsed.kind === 'splice') {
      const text = settings[parsed.name]
      if (typeof text !== 'string')
        throw new InvalidTemplateError(`{...${parsed.name}} is not a setting of ${app.name}`)
      argv.push(...argvOfSetting(text))
      continue
    }
    argv.push(fill(parsed.parts, values, app, phase))
  }
  if (argv.length === 0 || argv[0] === '')
    throw new InvalidTemplateError(`phase ${phase.name} has no command`)
  const env: Record<string, string> = {}
  for (const [name, template] of Object.entries(phase.env ?? {})) {
    const parsed = parseElement(template)
    if (parsed.kind === 'splice')
      throw new InvalidTemplateError(`env ${name} of phase ${phase.name}: no splice`)
    env[name] = fill(parsed.parts, values, app, phase)
  }
  return { argv, env }
}

/** renderPhase's argv. */
export const renderArgv = (...args: Parameters<typeof renderPhase>): string[] => renderPhase(...args).argv

/** renderPhase's environment. */
export const renderEnv = (...args: Parameters<typeof renderPhase>): Record<string, string> =>
  renderPhase(...args).env

/** The job's settings, checked again, and every placeholder's value for one of its tasks. */
function phaseValues(app: AppDef, spec: JobSpec, taskIndex: number, ctx: RunContext | undefined) {
  if (spec.app !== app.name) {
    throw new InvalidTemplateError(`job ${spec.id} is for app ${spec.app}, not ${app.name}`)
  }
  if (!Number.isSafeInteger(taskIndex) || taskIndex < 0 || taskIndex >= spec.taskCount) {
    throw new InvalidTemplateError(`task ${taskIndex} is not in job ${spec.id} (${spec.taskCount} tasks)`)
  }
  // The spec came through the farm document from some peer: check its args again before use.
  const settings = validateSettings(app, spec.args)
  const values = placeholderValues(spec, taskIndex, settings)
  for (const [name, value] of runnerValues(app, settings, ctx)) values.set(name, value)
  values.set('border', borderValue(spec, taskIndex, settings))
  return { settings, values }
}

/** One template element's text, each placeholder replaced by its value (one pass). */
function fill(
  parts: readonly TemplatePart[],
  values: ReadonlyMap<string, Placeholder>,
  app: AppDef,
  phase: PhaseDef,
): string {
  let out = ''
  for (const part of parts) {
    if (part.kind === 'text') {
      out += part.text
      continue
    }
    const value = values.get(part.name)
    if (value === undefined) {
      throw new InvalidTemplateError(
        `unknown placeholder {${part.name}} in phase ${phase.name} of ${app.name}`,
      )
    }
    if (typeof value === 'function') throw value()
    if (typeof value === 'object') throw value
    out += String(value)
  }
  return out
}

/** A placeholder's value, or the error (made when needed) thrown if a template uses it. */
type Placeholder = SettingValue | InvalidTemplateError | (() => InvalidTemplateError)

// Settings plus the task's frames; a frame placeholder that cannot apply maps to its error, thrown
// only if the template uses it.
function placeholderValues(
  spec: JobSpec,
  taskIndex: number,
  settings: Record<string, SettingValue>,
): Map<string, Placeholder> {
  const values = new Map<string, Placeholder>(Object.entries(settings))
  // The `scene` setting is a relative path: only its resolved form {scene} reaches argv.
  values.delete('scene')
  const frames = taskFrames(spec, taskIndex)
  if (frames === null || spec.frames === null) {
    const err = new InvalidTemplateError(`job ${spec.id} has no frames`)
    for (const name of ['first', 'last', 'frame', 'step']) values.set(name, err)
    return values
  }
  const [first, last] = frames
  values.set('first', first)
  values.set('last', last)
  values.set('step', spec.frames.step)
  // a function, not an Error: most tasks are chunks, and an Error captures the stack when made
  values.set(
    'frame',
    first === last
      ? first
      : () =>
          new InvalidTemplateError(
            `{frame} needs one frame per task; task ${taskIndex} has ${first}-${last}`,
          ),
  )
  return values
}

// The runner placeholders; each maps to its value, or to the error thrown if a template uses it.
function runnerValues(
  app: AppDef,
  settings: Record<string, SettingValue>,
  ctx: RunContext | undefined,
): Map<string, string | number | InvalidTemplateError> {
  const values = new Map<string, string | number | InvalidTemplateError>()
  if (ctx === undefined) {
    for (const name of RUNNER_PLACEHOLDERS) {
      values.set(
        name,
        new InvalidTemplateError(`{${name}} is filled by the worker: renderArgv needs a RunContext`),
      )
    }
    return values
  }
  const bad = (what: string) => new InvalidTemplateError(`run context: ${what}`)
  for (const key of ['indir', 'outdir', 'workdir'] as const) {
    const dir = ctx[key]
    values.set(key, isPath(dir) ? dir : bad(`${key} must be an absolute path, got ${JSON.stringify(dir)}`))
  }
  values.set(
    'threads',
    Number.isSafeInteger(ctx.threads) && ctx.threads > 0 && ctx.threads <= 4096
      ? ctx.threads
      : bad(`threads must be a positive integer, got ${ctx.threads}`),
  )
  values.set(
    'device',
    CYCLES_DEVICES.includes(ctx.device)
      ? ctx.device
      : bad(`device must be one of ${CYCLES_DEVICES.join(', ')}, got ${JSON.stringify(ctx.device)}`),
  )
  const appdir = ctx.appdir ?? app.dir
  values.set(
    'appdir',
    appdir !== undefined && isPath(appdir) ? appdir : bad(`app ${app.name} has no config directory`),
  )
  values.set('scene', sceneValue(ctx, settings.scene))
  return values
}

// The main file: the context's, or the `scene` setting resolved inside indir (never outside it).
function sceneValue(ctx: RunContext, setting: SettingValue | undefined): string | InvalidTemplateError {
  if (ctx.scene !== undefined) {
    return isPath(ctx.scene)
      ? ctx.scene
      : new InvalidTemplateError('run context: scene must be an absolute path')
  }
  if (typeof setting !== 'string' || !isPath(ctx.indir)) {
    return new InvalidTemplateError('{scene} needs a scene in the run context or a scene setting')
  }
  const path = resolve(join(ctx.indir, setting))
  const rel = relative(ctx.indir, path)
  if (rel === '' || rel.split(sep)[0] === '..' || isAbsolute(rel)) {
    return new InvalidTemplateError(`scene ${JSON.stringify(setting)} is not inside the task's inputs`)
  }
  return path
}

// 'none' for a task of whole frames, else the Blender border of the task's tile of the frame.
function borderValue(
  spec: JobSpec,
  taskIndex: number,
  settings: Record<string, SettingValue>,
): string | InvalidTemplateError {
  const tile = taskTile(spec, taskIndex)
  if (tile === null) return 'none'
  const r = tileOf(spec.tiles, tile, settings)
  return r instanceof InvalidTemplateError ? r : borderArg(r)
}

// Tile `index` of `count` over the frame size the job's settings give.
function tileOf(
  count: number,
  index: number,
  settings: Record<string, SettingValue>,
): Tile | InvalidTemplateError {
  const { width, height } = settings
  if (typeof width !== 'number' || typeof height !== 'number' || width < 1 || height < 1) {
    return new InvalidTemplateError('tiles need the frame size: settings width and height')
  }
  try {
    return tileRect(index, tileGrid(count), width, height)
  } catch (err) {
    return new InvalidTemplateError((err as Error).message, { cause: err })
  }
}

/**
 * {...stitch}: ffmpeg over the tiles of the task's one frame, each where a tile task published it
 * (<indir>/tiles/...), into <outdir>/frame_NNNN.png. Only integers come from the job (tiles, width,
 * height, the frame); every path is the runner's.
 */
function stitchSplice(
  spec: JobSpec,
  taskIndex: number,
  settings: Record<string, SettingValue>,
  ctx: RunContext | undefined,
): string[] {
  if (ctx === undefined || !isPath(ctx.indir) || !isPath(ctx.outdir)) {
    throw new InvalidTemplateError('{...stitch} is filled by the worker: renderArgv needs a RunContext')
  }
  const frames = taskFrames(spec, taskIndex)
  if (frames === null || frames[0] !== frames[1]) {
    throw new InvalidTemplateError(
      `{...stitch} needs one frame per task; job ${spec.id} has ${frames ?? 'none'}`,
    )
  }
  const count = settings.tiles
  if (typeof count !== 'number' || count < 2) {
    throw new InvalidTemplateError('{...stitch} needs a setting tiles of at least 2')
  }
  const first = tileOf(count, 0, settings)
  if (first instanceof InvalidTemplateError) throw first
  const { width, height } = settings as { width: number; height: number }
  const tiles = tilesOf(tileGrid(count), width, height)
  const frame = frames[0]
  const inputs = tiles.map((t) => join(ctx.indir, tilePath(frame, t.index)))
  return stitchArgv(tiles, inputs, join(ctx.outdir, frameFileName(frame)))
}

const isPath = (p: unknown): p is string => typeof p === 'string' && isAbsolute(p) && !p.includes('\0')

const PLAIN_RE = /^[A-Za-z0-9_/.,:=+@%-]+$/

/** argv as a POSIX shell would need it quoted: for logs and display only, never executed. */
export function quoteArgv(argv: readonly string[]): string {
  return argv.map((a) => (PLAIN_RE.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ')
}
