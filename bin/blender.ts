// `openfarm submit blender scene.blend`: read the scene with this machine's Blender (frame range, fps,
// denoise, every file it needs), refuse what cannot render (a missing texture, a corrupt file), then
// submit the render job with its files, and with --video the encode job that depends on it, or with
// --tiles N a still cut into N tiles (one task each) and the stitch job that assembles the frame.

import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { LIMITS } from '../src/crdt/schema.ts'
import type { ApiClient } from '../src/node/client.ts'
import { planSceneFiles } from '../src/node/layout.ts'
import { knownApps } from '../src/node/serve.ts'
import type { AppDef } from '../src/runner/apps.ts'
import { inspectBlend, type SceneInfo } from '../src/runner/blender/inspect.ts'
import { findPyCache, pyCacheRoot } from '../src/runner/blender/pycache.ts'
import { compileJob, parseFrames, type SubmitInput } from '../src/runner/compile.ts'
import { featureTag } from '../src/runner/selftest.ts'
import { isJson, out } from './read.ts'
import { type SubmitFlags, SubmitUsageError, submitBody } from './submit.ts'

export interface BlenderFlags extends SubmitFlags {
  out?: string | undefined
  video?: boolean | undefined
  device?: string | undefined
  denoise?: string | undefined
  overwrite?: boolean | undefined
  tiles?: string | undefined
}

/** A scene no Blender could render as it is: refused before anything is submitted. */
export class UnrenderableSceneError extends Error {
  static override readonly name = 'UnrenderableSceneError'
  override readonly name = 'UnrenderableSceneError'
}

interface Submitted {
  id: string
  name: string
  tasks: number
  state: string
  noHost?: string | null
}

/** The job that waits for the render job: the stitch of --tiles, or the encode of --video. */
type FollowUp = 'stitch' | 'video'

/** A follow-up job as posted: a submit, and where its results come home on this machine. */
type FollowUpJob = SubmitInput & { out?: string; overwrite?: boolean }

/**
 * The render job is on the farm but the job that was to follow it was refused: the message says
 * which job stays and how to remove it, so that submitting again does not render the scene twice.
 */
export class FollowUpRefusedError extends Error {
  static override readonly name = 'FollowUpRefusedError'
  override readonly name = 'FollowUpRefusedError'
  constructor(
    readonly render: Submitted,
    readonly followUp: FollowUp,
    cause: Error,
  ) {
    super(
      `submitted ${render.id}: ${render.name}, but the farm refused its ${followUp} job: ${cause.message}\n` +
        `${render.id} stays on the farm and renders without it: remove it ('openfarm rm ${render.id}') ` +
        `or stop it ('openfarm cancel ${render.id}') before you submit again, or the scene renders twice`,
      { cause },
    )
  }
}

/**
 * The follow-up job is named "NAME stitch" or "NAME video": refused before anything is submitted
 * when that name breaks the farm's rule for job names (LIMITS.nameChars, after trimming).
 */
export function checkFollowUpName(name: string, followUp: FollowUp, fromFlag: boolean): void {
  const longest = LIMITS.nameChars - ` ${followUp}`.length
  if (name.length > 0 && name.length <= longest) return
  const what = fromFlag ? '--name' : `the scene's file name (the default --name)`
  throw new SubmitUsageError(
    `${what} has ${name.length} characters: the ${followUp} job is named "NAME ${followUp}", ` +
      `so the name must have 1 to ${longest} (the farm takes names of up to ${LIMITS.nameChars}): ` +
      'give a shorter --name',
  )
}

/**
 * Compiles the follow-up job as the node will (against a stand-in id for the render job it waits
 * for), so that what would refuse it refuses the submit before the render job is on the farm.
 */
export function checkFollowUp(
  followUp: FollowUp,
  job: FollowUpJob,
  apps: readonly AppDef[] = knownApps(),
): void {
  const { out: _out, overwrite: _overwrite, ...input } = job
  try {
    compileJob(input, { id: 'jfollowup', peer: 'this-node', now: Date.now(), apps })
  } catch (err) {
    throw new SubmitUsageError(
      `the ${followUp} job would be refused (${(err as Error).message}): nothing was submitted`,
    )
  }
}

/** The major.minor of a Blender version: frames of one video all come from one renderer. */
export const majorMinor = (version: string): string => version.split('.').slice(0, 2).join('.')

/** Warnings the user must see before the farm renders (printed on stderr, also with --json). */
export function sceneWarnings(scene: SceneInfo, denoise: string, frames?: string): string[] {
  const w = [...scene.notes]
  const asked = frames === undefined ? null : parseFrames(frames)
  if (asked !== null && (asked.start < scene.frameStart || asked.end > scene.frameEnd)) {
    w.push(
      `--frames ${frames} reaches outside the scene's frame range ${scene.frameStart}-${scene.frameEnd}: ` +
        'those frames render too, as Blender shows them',
    )
  }
  if (scene.denoiseWithOidn && !scene.hasOpenImageDenoise && denoise === 'keep') {
    w.push(
      `the scene denoises, but Blender ${scene.blenderVersion} here is built without OpenImageDenoise: ` +
        'hosts like this one render it with denoising off (--denoise require renders it only where Blender has it)',
    )
  }
  if (scene.denoiseWithOidn && !scene.hasOpenImageDenoise && denoise === 'require') {
    w.push(
      `Blender ${scene.blenderVersion} here is built without OpenImageDenoise: only hosts whose Blender ` +
        `has it (tag ${featureTag('blender', 'oidn')} in \`openfarm hosts\`) render this job`,
    )
  }
  return w
}

/**
 * `openfarm submit blender`: reads the scene with this machine's Blender (with the bytecode cache of
 * the node on `dataDir`, when it built one), then submits its jobs through `client`.
 */
export async function submitBlender(
  client: ApiClient,
  file: string | undefined,
  f: BlenderFlags,
  now: number,
  dataDir?: string,
): Promise<Submitted[]> {
  if (file === undefined || !file.endsWith('.blend')) {
    throw new SubmitUsageError(
      'usage: openfarm submit blender SCENE.blend [--frames 1-48] [--out DIR] [--video | --tiles N]',
    )
  }
  const tiles = tilesFlag(f.tiles)
  if (tiles > 1 && f.video)
    throw new SubmitUsageError('--tiles renders one still frame: it cannot make a --video')
  if (tiles > 1 && f.frames !== undefined && !/^\s*-?\d+\s*$/.test(f.frames)) {
    throw new SubmitUsageError(`--tiles cuts one frame (a still): give --frames N, not ${f.frames}`)
  }
  const blend = resolve(file)
  // the farm trims names; the follow-up job's name is this one's plus a word, checked before Blender runs
  const name = (f.name ?? basename(blend, '.blend')).trim()
  const followUp: FollowUp | null = tiles > 1 ? 'stitch' : f.video ? 'video' : null
  if (followUp !== null) checkFollowUpName(name, followUp, f.name !== undefined)
  const denoise = f.denoise ?? 'keep'
  if (!['keep', 'off', 'require'].includes(denoise)) {
    throw new SubmitUsageError('--denoise takes keep, off or require')
  }
  const device = f.device ?? 'any'
  if (!['cpu', 'gpu', 'any'].includes(device)) throw new SubmitUsageError('--device takes cpu, gpu or any')
  const pycache = dataDir === undefined ? undefined : await findPyCache(join(pyCacheRoot(dataDir), 'blender'))
  const scene = await inspectBlend(blend, pycache === undefined ? {} : { pycache })
  // every task would fail with "the job requires denoising", max-retries times each
  if (denoise === 'require' && !scene.denoise) {
    throw new UnrenderableSceneError(
      `${file}: --denoise require, but the scene does not denoise (${scene.engine === 'CYCLES' ? "Cycles' Denoise is off" : `it renders with ${scene.engine}, not Cycles`}): turn it on, or submit without --denoise require`,
    )
  }
  // every task would fail with "Cannot render, no camera", max-retries times each
  if (scene.camera === null) {
    throw new UnrenderableSceneError(
      `${file}: the scene has no camera, so Blender cannot render it: set one (Scene properties > Camera), save, and submit again`,
    )
  }
  const plan = planSceneFiles(
    blend,
    scene.dependencies.map((d) => ({ written: d.written, absolute: d.absolute, exists: d.exists })),
  )
  for (const w of sceneWarnings(scene, denoise, f.frames)) console.error(`openfarm: warning: ${w}`)
  const outDir = f.out === undefined ? undefined : resolve(f.out)
  if (outDir !== undefined && !f.overwrite) await refuseUsedOutDir(outDir)
  if (tiles > 1 && f.frames === undefined && scene.frameStart !== scene.frameEnd) {
    throw new SubmitUsageError(
      `--tiles cuts one frame (a still): say which with --frames N (the scene has ${scene.frameStart}-${scene.frameEnd})`,
    )
  }
  const frames =
    f.frames ?? `${scene.frameStart}-${scene.frameEnd}${scene.frameStep > 1 ? `x${scene.frameStep}` : ''}`
  // checked before anything is submitted: a video needs consecutive frames
  const videoChunk = f.video ? frameTotal(frames) : 0
  const group = f.group ?? (f.video || tiles > 1 ? `g${randomBytes(4).toString('hex')}` : undefined)
  // the frame's size in pixels, as Blender computes it: the tile grid is cut over it
  const size = {
    width: Math.floor((scene.resolutionX * scene.resolutionPercentage) / 100),
    height: Math.floor((scene.resolutionY * scene.resolutionPercentage) / 100),
  }
  const home = outDir === undefined ? {} : { out: outDir, overwrite: f.overwrite === true }
  const common = { ...f, frames, name, group }
  const body = submitBody('blender', common, now)
  const requires = body.requires as { tags: string[] }
  if (device !== 'any') requires.tags.push(`device:${device}`)
  // the hosts whose Blender can denoise it as set: the others would refuse every task of it
  if (denoise === 'require' && scene.denoiseWithOidn) requires.tags.push(featureTag('blender', 'oidn'))
  // the job that waits for the render job, given the render job's id
  const priority = body.priority as number | undefined
  const next = (render: string): FollowUpJob =>
    followUp === 'stitch'
      ? {
          app: 'stitch',
          name: `${name} stitch`,
          group,
          frames,
          priority,
          settings: { tiles, ...size },
          inputsFrom: [render],
          ...home,
        }
      : {
          app: 'ffmpeg',
          name: `${name} video`,
          group,
          frames,
          chunk: videoChunk,
          priority,
          settings: { fps: Math.round(scene.fps * 1000) / 1000, output: `${safeName(name)}.mp4` },
          inputsFrom: [render],
          ...home,
        }
  // everything the follow-up needs is checked before the render job goes to the farm
  if (followUp !== null) checkFollowUp(followUp, next('jrender'))
  // every frame from one renderer: the scene's Blender major.minor, unless --app-version or
  // --requires app= names another
  const pinned = (body.appVersion as string | undefined) ?? majorMinor(scene.blenderVersion)
  const render = await client.post<Submitted>('/v1/jobs', {
    ...body,
    settings: { ...(body.settings as object), scene: plan.scene, denoise, ...(tiles > 1 ? size : {}) },
    appVersion: pinned,
    files: plan.files,
    // the tiles stay on the farm; the stitched frame comes home
    ...(tiles > 1 ? { tiles } : home),
  })
  const jobs: Submitted[] = [render]
  if (followUp !== null) {
    try {
      jobs.push(await client.post<Submitted>('/v1/jobs', next(render.id)))
    } catch (err) {
      // a script reading --json learns which job stays on the farm from stdout, as on success;
      // the error (stderr, exit 1) says why the follow-up is missing
      if (isJson()) out(jobs, () => '')
      throw new FollowUpRefusedError(render, followUp, err as Error)
    }
  }
  out(jobs, () =>
    [
      `submitted ${render.id}: ${render.name} (${render.tasks} ${tiles > 1 ? 'tile' : 'task'}${render.tasks === 1 ? '' : 's'}, ${render.state}), ` +
        `${plan.files.length} file(s), Blender ${pinned}`,
      ...(render.noHost ? [`no host can run it now: ${render.noHost}`] : []),
      ...jobs.slice(1).map((j) => `submitted ${j.id}: ${j.name} (waits for ${render.id})`),
      ...(outDir === undefined ? [] : [`frames come home to ${outDir}`]),
    ].join('\n'),
  )
  return jobs
}

function tilesFlag(text: string | undefined): number {
  if (text === undefined) return 1
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < 1 || n > 256) {
    throw new SubmitUsageError(`--tiles takes a whole number from 1 to 256, not ${JSON.stringify(text)}`)
  }
  return n
}

async function refuseUsedOutDir(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[])
  const taken = names.filter((n) => /^frame_\d+\.png$/.test(n) || n.endsWith('.mp4'))
  if (taken.length > 0) {
    throw new SubmitUsageError(
      `${dir} already holds ${taken.length} frame or video file(s) (${taken.slice(0, 3).join(', ')}): ` +
        'choose another --out, or pass --overwrite to replace what the new job makes',
    )
  }
}

function frameTotal(frames: string): number {
  const m = /^(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?$/.exec(frames.trim())
  if (m === null) throw new SubmitUsageError(`frames ${JSON.stringify(frames)} are not a range such as 1-48`)
  const start = Number(m[1])
  const end = m[2] === undefined ? start : Number(m[2])
  const step = m[3] === undefined ? 1 : Number(m[3])
  if (step !== 1) throw new SubmitUsageError('--video needs consecutive frames (no step)')
  return Math.max(1, end - start + 1)
}

const safeName = (name: string): string =>
  name
    .replace(/[^A-Za-z0-9_.+-]/g, '_')
    .replace(/^[^A-Za-z0-9_]/, '_')
    .slice(0, 90)
