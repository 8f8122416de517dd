// Reads a .blend with Blender itself at submit: frame range, fps, resolution, engine, samples,
// denoising (and whether this Blender can denoise), the output path, and every external file the
// scene needs, so the job can ship them and the worker can rebuild the layout.

import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CorruptBlendError, InspectError } from '../errors.ts'
import { runPhase } from '../execute.ts'
import { pyCacheEnv } from './pycache.ts'

export type DependencyKind =
  | 'image'
  | 'library'
  | 'sound'
  | 'font'
  | 'movieclip'
  | 'cache'
  | 'volume'
  | 'strip'
  | 'other'

export interface Dependency {
  readonly kind: DependencyKind
  /** The path as the .blend holds it, e.g. '//../textures/wood.png' (the same for each file of a sequence). */
  readonly written: string
  /** Where it resolves on this machine, normalised; the key for a remap. */
  readonly absolute: string
  readonly exists: boolean
  /** E.g. 'UDIM tile 1002', 'image sequence: 48 files matching shot_<digits>.png'. */
  readonly note?: string
}

export interface SceneInfo {
  readonly blenderVersion: string
  readonly file: string
  readonly scene: string
  readonly frameStart: number
  readonly frameEnd: number
  readonly frameStep: number
  /** render.fps / render.fps_base. */
  readonly fps: number
  readonly resolutionX: number
  readonly resolutionY: number
  readonly resolutionPercentage: number
  /** 'CYCLES', 'BLENDER_EEVEE', 'BLENDER_WORKBENCH', ... */
  readonly engine: string
  /** Cycles or Eevee render samples; null for other engines. */
  readonly samples: number | null
  /** Cycles denoising on in the scene. */
  readonly denoise: boolean
  /** ... with OpenImageDenoise (not OptiX's denoiser): only a Blender built with it renders the scene as set. */
  readonly denoiseWithOidn: boolean
  /** Whether the Blender that read the scene was built with OpenImageDenoise. */
  readonly hasOpenImageDenoise: boolean
  readonly output: string
  readonly fileFormat: string
  /** The path Blender would save the first frame to, as set in the scene. */
  readonly framePath: string
  readonly camera: string | null
  readonly dependencies: readonly Dependency[]
  /** What could not be listed, and things that will not render as set. */
  readonly notes: readonly string[]
}

export interface InspectOptions {
  /** The Blender binary; default 'blender' on PATH. */
  readonly blender?: string
  readonly signal?: AbortSignal
  /** Default 60 s: a big scene takes a while to load. */
  readonly timeoutMs?: number
  /** A bytecode cache of this host's node (pycache.ts), for a quicker Blender start. */
  readonly pycache?: string
}

const SCRIPT = fileURLToPath(new URL('./inspect.py', import.meta.url))
const MAX_JSON_BYTES = 16 * 1024 * 1024
const READ_ERROR_RE =
  /^Error: (.*(?:Failed to read blend file|File format is not supported|Cannot read file).*)$/

/** Reads the scene with Blender; throws CorruptBlendError for a file it cannot read, InspectError otherwise. */
export async function inspectBlend(path: string, opts: InspectOptions = {}): Promise<SceneInfo> {
  const file = resolve(path)
  try {
    const s = await stat(file)
    if (!s.isFile()) throw new InspectError(`${file} is not a file`)
  } catch (err) {
    if ((err as Error).name === 'InspectError') throw err
    throw new InspectError(`no such file: ${file}`, { cause: err })
  }
  const dir = await mkdtemp(join(tmpdir(), 'openfarm-inspect-'))
  try {
    const out = join(dir, 'scene.json')
    const blender = opts.blender ?? 'blender'
    const argv = [blender, '-b', '--factory-startup', file, '-Y', '--python-exit-code', '1']
    argv.push('--python', SCRIPT, '--', out)
    let readError: string | null = null
    const result = await runPhase(argv, {
      cwd: dir,
      env: { ...(opts.pycache === undefined ? {} : pyCacheEnv(opts.pycache)), TMPDIR: dir },
      signal: opts.signal ?? new AbortController().signal,
      timeoutMs: opts.timeoutMs ?? 60_000,
      killGraceMs: 1000,
      onLine: (_stream, line) => {
        readError ??= READ_ERROR_RE.exec(line)?.[1] ?? null
      },
    })
    if (readError !== null) {
      const said = (readError as string).replaceAll(` in file '${file}'`, '').replaceAll(` '${file}'`, '')
      throw new CorruptBlendError(`cannot read ${file}: ${oneLine(said)}`)
    }
    if (!result.ok) throw new InspectError(`reading ${file} with ${blender} failed: ${result.reason}`)
    let text: string
    try {
      if ((await stat(out)).size > MAX_JSON_BYTES) throw new Error(`more than ${MAX_JSON_BYTES} bytes`)
      text = await readFile(out, 'utf8')
    } catch (err) {
      throw new InspectError(
        `reading ${file}: Blender wrote no scene description (${(err as Error).message})`,
      )
    }
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch (err) {
      throw new InspectError(`reading ${file}: Blender's scene description is not JSON`, { cause: err })
    }
    return parseSceneInfo(raw)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const NUMBERS = [
  'frameStart',
  'frameEnd',
  'frameStep',
  'fps',
  'resolutionX',
  'resolutionY',
  'resolutionPercentage',
]
const STRINGS = ['blenderVersion', 'file', 'scene', 'engine', 'output', 'fileFormat', 'framePath']
const KINDS: readonly string[] = [
  'image',
  'library',
  'sound',
  'font',
  'movieclip',
  'cache',
  'volume',
  'strip',
  'other',
]

// The script is ours, but what it prints comes from a file someone sent: check the shape.
function parseSceneInfo(raw: unknown): SceneInfo {
  const bad = (what: string) => new InspectError(`Blender's scene description is malformed: ${what}`)
  if (typeof raw !== 'object' || raw === null) throw bad('not an object')
  const o = raw as Record<string, unknown>
  for (const k of NUMBERS) if (typeof o[k] !== 'number' || !Number.isFinite(o[k])) throw bad(k)
  for (const k of STRINGS) if (typeof o[k] !== 'string') throw bad(k)
  for (const k of ['denoise', 'denoiseWithOidn', 'hasOpenImageDenoise'])
    if (typeof o[k] !== 'boolean') throw bad(k)
  if (o.samples !== null && typeof o.samples !== 'number') throw bad('samples')
  if (o.camera !== null && typeof o.camera !== 'string') throw bad('camera')
  if (!Array.isArray(o.notes) || !o.notes.every((n) => typeof n === 'string')) throw bad('notes')
  if (!Array.isArray(o.dependencies)) throw bad('dependencies')
  for (const d of o.dependencies as Record<string, unknown>[]) {
    const ok =
      typeof d === 'object' &&
      d !== null &&
      KINDS.includes(d.kind as string) &&
      typeof d.written === 'string' &&
      typeof d.absolute === 'string' &&
      typeof d.exists === 'boolean' &&
      (d.note === undefined || typeof d.note === 'string')
    if (!ok) throw bad('dependencies')
  }
  return o as unknown as SceneInfo
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: reasons are one line of plain text
const oneLine = (s: string): string => s.replace(/[\u0000-\u001f\u007f]+/g, ' ').slice(0, 400)
