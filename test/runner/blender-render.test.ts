import assert from 'node:assert/strict'
import { copyFile, mkdir, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { planSceneFiles } from '../../src/node/layout.ts'
import { getApp } from '../../src/runner/apps.ts'
import { type RunContext, renderArgv, renderEnv } from '../../src/runner/argv.ts'
import { inspectBlend, type SceneInfo } from '../../src/runner/blender/inspect.ts'
import { compileJob } from '../../src/runner/compile.ts'
import { runPhase } from '../../src/runner/execute.ts'
import { checkOutputs, framesOf } from '../../src/runner/outputs.ts'
import { ProgressParser } from '../../src/runner/progress.ts'
import { blenderMissing, makeTestScene } from '../fixtures/blender/make-scene.ts'
import { tempDir } from '../helpers.ts'

const missing = await blenderMissing()
const blender = getApp('blender')
const ffmpeg = getApp('ffmpeg')

async function run(argv: string[], cwd: string, env: Record<string, string> = {}) {
  const lines: string[] = []
  const result = await runPhase(argv, {
    cwd,
    env: { ...env, TMPDIR: cwd },
    signal: AbortSignal.timeout(60_000),
    onLine: (_s, l) => lines.push(l),
  })
  return { result, lines }
}

/** md5 of the decoded pixels (PNG bytes differ between runs: date and render time in the metadata). */
async function pixels(file: string, cwd: string): Promise<string> {
  const { result, lines } = await run(['ffmpeg', '-v', 'error', '-i', file, '-f', 'md5', '-'], cwd)
  assert.equal(result.ok, true, result.reason ?? '')
  return lines.find((l) => l.startsWith('MD5='))!
}

// A task directory as the worker lays it out: in/ (the scene's relative layout), out/, tmp/.
async function taskDir(root: string, name: string): Promise<RunContext> {
  const workdir = join(root, name)
  for (const d of ['in', 'out', 'tmp']) await mkdir(join(workdir, d), { recursive: true })
  return { indir: join(workdir, 'in'), outdir: join(workdir, 'out'), workdir, threads: 2, device: 'CPU' }
}

describe('a real chunk render through renderArgv and runPhase', { skip: missing ?? false }, () => {
  let tmp: { path: string; remove: () => Promise<void> }
  let info: SceneInfo
  const reference: string[] = []
  let moved: string
  before(async () => {
    tmp = await tempDir('render')
    const original = join(tmp.path, 'project')
    await mkdir(original)
    const scene = await makeTestScene(original)
    info = await inspectBlend(scene.blend)
    // The reference: Blender run directly with the project folder in place.
    const ref = join(tmp.path, 'ref')
    await mkdir(ref)
    const direct = await run(
      ['blender', '-b', scene.blend, '-Y', '-o', `${ref}/f_####`, '-F', 'PNG', '-x', '1', '-f', '1,2'],
      ref,
    )
    assert.equal(direct.result.ok, true, direct.result.reason ?? '')
    for (const f of [1, 2]) reference.push(await pixels(join(ref, `f_000${f}.png`), ref))
    assert.notEqual(reference[0], reference[1], 'the scene moves between frames')
    // The project folder moves away: its absolute library path no longer resolves.
    moved = join(tmp.path, 'moved')
    await rename(original, moved)
  })
  after(() => tmp?.remove())

  it('renders frames 1-2 from the moved scene with the remap, pixel-identical to the direct render', async () => {
    const ctx = await taskDir(tmp.path, 'task')
    // The inputs as the worker lays them out (here copied from where the project moved to).
    const layout = planSceneFiles(info.file, info.dependencies)
    assert.deepEqual(
      layout.files.map((f) => f.path),
      ['lib/lib.blend', 'shot/main.blend', 'textures/wood.png'],
    )
    for (const f of layout.files) {
      await mkdir(join(ctx.indir, f.path, '..'), { recursive: true })
      await copyFile(join(moved, f.path), join(ctx.indir, f.path))
    }
    // what the worker writes (src/node/taskfiles.ts): each file's original path -> its copy
    const remap = Object.fromEntries(layout.files.map((f) => [f.orig, join(ctx.indir, f.path)]))
    await writeFile(join(ctx.workdir, 'remap.json'), JSON.stringify(remap))

    const spec = compileJob(
      { app: 'blender', frames: '1-12', chunk: 2, settings: { scene: layout.scene } },
      { id: 'j1', peer: 'p', now: 0 },
    )
    const argv = renderArgv(blender, blender.phases[0]!, spec, 0, ctx)
    const progress = new ProgressParser(blender, 2)
    const fractions: number[] = []
    const lines: string[] = []
    const result = await runPhase(argv, {
      cwd: ctx.workdir,
      env: { ...renderEnv(blender, blender.phases[0]!, spec, 0, ctx), TMPDIR: join(ctx.workdir, 'tmp') },
      signal: AbortSignal.timeout(60_000),
      onLine: (_s, line) => {
        lines.push(line)
        const p = progress.push(line)
        if (p !== null) fractions.push(p.fraction)
      },
    })
    assert.equal(result.ok, true, result.reason ?? '')
    assert.ok(lines.includes('OpenFarm: remapped 2 path(s)'), 'prep.py remapped the library and its image')
    const check = await checkOutputs(blender, lines, framesOf(1, 2), ctx.outdir)
    assert.equal(check.ok, true, check.reason ?? '')
    assert.deepEqual(
      check.files.map((f) => [f.frame, f.path]),
      [
        [1, join(ctx.outdir, 'frame_0001.png')],
        [2, join(ctx.outdir, 'frame_0002.png')],
      ],
    )
    for (const [i, f] of check.files.entries()) assert.equal(await pixels(f.path, ctx.workdir), reference[i])
    assert.equal(progress.progress.fraction, 1)
    assert.ok(fractions.length >= 4 && fractions.every((f, i) => i === 0 || f >= fractions[i - 1]!))

    // ffmpeg assembles the frames into a video (the render job's range as one task).
    const video = await taskDir(tmp.path, 'video')
    for (const f of check.files) await copyFile(f.path, join(video.indir, `frame_000${f.frame}.png`))
    const encode = compileJob(
      { app: 'ffmpeg', frames: '1-2', chunk: 2, settings: { fps: info.fps } },
      { id: 'j2', peer: 'p', now: 0 },
    )
    const enc = await run(renderArgv(ffmpeg, ffmpeg.phases[0]!, encode, 0, video), video.workdir)
    assert.equal(enc.result.ok, true, enc.result.reason ?? '')
    const out = await checkOutputs(ffmpeg, enc.lines, [1, 2], video.outdir)
    assert.equal(out.ok, true, out.reason ?? '')
    const probe = await run(
      [
        'ffprobe',
        '-v',
        'error',
        '-count_frames',
        '-select_streams',
        'v:0',
        '-show_entries',
        'stream=nb_read_frames,pix_fmt,codec_name',
        '-of',
        'csv=p=0',
        out.files[0]!.path,
      ],
      video.workdir,
    )
    assert.deepEqual(
      probe.lines.filter((l) => l !== ''),
      ['h264,yuv420p,2'],
    )
  })

  it('renders the denoise-on scene with a visible warning, and refuses it when the job requires denoising', async () => {
    const ctx = await taskDir(tmp.path, 'denoise')
    await copyFile(join(moved, 'shot/main_denoise.blend'), join(ctx.indir, 'main_denoise.blend'))
    const job = (denoise: string) =>
      compileJob(
        { app: 'blender', frames: '3', settings: { scene: 'main_denoise.blend', denoise } },
        { id: 'j3', peer: 'p', now: 0 },
      )
    const phase = blender.phases[0]!
    const keep = await run(
      renderArgv(blender, phase, job('keep'), 0, ctx),
      ctx.workdir,
      renderEnv(blender, phase, job('keep'), 0, ctx),
    )
    assert.equal(keep.result.ok, true, keep.result.reason ?? '')
    assert.ok(
      keep.lines.some((l) =>
        l.startsWith(
          'OpenFarm warning: denoising turned off: this Blender was built without OpenImageDenoise',
        ),
      ),
    )
    assert.equal((await checkOutputs(blender, keep.lines, [3], ctx.outdir)).ok, true)

    const strict = await taskDir(tmp.path, 'strict')
    await copyFile(join(moved, 'shot/main_denoise.blend'), join(strict.indir, 'main_denoise.blend'))
    const refused = await run(
      renderArgv(blender, phase, job('require'), 0, strict),
      strict.workdir,
      renderEnv(blender, phase, job('require'), 0, strict),
    )
    assert.equal(refused.result.exitCode, 1)
    const check = await checkOutputs(blender, refused.lines, [3], strict.outdir)
    assert.equal(
      check.reason,
      'Blender saved 0 of 1 frame (missing 3): Error: OpenFarm: the scene denoises with OpenImageDenoise, which this Blender was built without',
    )
  })

  it('refuses prep.py options given after --, as app configs written for an earlier prep.py did', async () => {
    const ctx = await taskDir(tmp.path, 'oldargs')
    const prep = join(blender.dir!, '..', 'blender', 'prep.py')
    const old = await run(
      ['blender', '-b', '-Y', '--python-exit-code', '1', '--python', prep, '--', '--openfarm-denoise', 'off'],
      ctx.workdir,
    )
    assert.equal(old.result.exitCode, 1)
    assert.ok(
      old.lines.includes(
        'Error: OpenFarm: --openfarm-denoise is no longer read: prep.py takes its options from OPENFARM_* variables',
      ),
      old.lines.join('\n'),
    )
  })

  it("renders on the Cycles device the worker picked (prep.py sets it, as Blender's --cycles-device would)", async () => {
    // this machine has no CUDA: Cycles says so, where it would ignore a device nobody set
    const ctx = { ...(await taskDir(tmp.path, 'cuda')), device: 'CUDA' } as const
    await copyFile(join(moved, 'shot/main_denoise.blend'), join(ctx.indir, 'main_denoise.blend'))
    const spec = compileJob(
      { app: 'blender', frames: '3', settings: { scene: 'main_denoise.blend', denoise: 'off' } },
      { id: 'j4', peer: 'p', now: 0 },
    )
    const phase = blender.phases[0]!
    const cuda = await run(
      renderArgv(blender, phase, spec, 0, ctx),
      ctx.workdir,
      renderEnv(blender, phase, spec, 0, ctx),
    )
    const check = await checkOutputs(blender, cuda.lines, [3], ctx.outdir)
    assert.equal(
      check.reason,
      'Blender saved 0 of 1 frame (missing 3): Error: Found no Cycles device of the specified type',
    )
  })
})

if (missing !== null) {
  describe('real Blender render', () => {
    it('needs Blender', (t) => t.skip(missing))
  })
}
