// Tiled jobs without Blender: compileJob accepts a still in tiles and refuses the rest by name; the
// render argv carries each task's border ('none' for whole frames); the stitch job's ffmpeg argv is
// the runner's alone (paths from the run context, only integers from the job).

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { JobSpec } from '../../src/crdt/schema.ts'
import { type AppDef, checkAppDef, getApp } from '../../src/runner/apps.ts'
import { renderArgv, renderEnv } from '../../src/runner/argv.ts'
import { borderArg, stitchArgv, tileGrid, tileRect, tilesOf } from '../../src/runner/blender/tiles.ts'
import { compileJob, type SubmitInput } from '../../src/runner/compile.ts'

const ctx = { id: 'job-1', peer: 'peerA', now: 1 }
const compile = (input: SubmitInput) => compileJob(input, ctx)
const size = { width: 96, height: 54 }
const still = (extra: Partial<SubmitInput> = {}): SubmitInput => ({
  app: 'blender',
  frames: '7',
  tiles: 4,
  settings: { scene: 'shot/main.blend', ...size },
  ...extra,
})
const run = {
  indir: '/farm/task/in',
  outdir: '/farm/task/out',
  workdir: '/farm/task',
  threads: 2,
  device: 'CPU',
} as const
const throwsNamed = (fn: () => unknown, name: string, message: RegExp) =>
  assert.throws(fn, (err: Error) => {
    assert.equal(err.name, name)
    assert.match(err.message, message)
    return true
  })

describe('compileJob with tiles', () => {
  it('makes one task per tile of the one frame, chunk 1', () => {
    const spec = compile(still({ chunk: 4 }))
    assert.deepEqual([spec.tiles, spec.taskCount, spec.chunk], [4, 4, 1])
    assert.deepEqual(spec.frames, { start: 7, end: 7, step: 1 })
    assert.deepEqual([spec.args.width, spec.args.height], [96, 54])
    const whole = compile(still({ tiles: 1 }))
    assert.deepEqual([whole.tiles, whole.taskCount], [1, 1])
    assert.equal(compile({ app: 'blender', frames: '1-12', settings: { scene: 'a.blend' } }).tiles, 1)
  })

  it('refuses tiles of more than one frame, of other apps, without a frame size, or past the limit', () => {
    throwsNamed(() => compile(still({ frames: '1-12' })), 'InvalidSubmitError', /one frame.*1-12 are 12/)
    throwsNamed(
      () => compile({ app: 'echo', frames: '7', tiles: 4 }),
      'InvalidSubmitError',
      /app echo does not render tiles.*blender/,
    )
    throwsNamed(
      () => compile({ app: 'command', tiles: 2, settings: { argv: '["true"]' } }),
      'InvalidSubmitError',
      /app command does not render tiles/,
    )
    throwsNamed(
      () => compile(still({ settings: { scene: 'a.blend' } })),
      'InvalidSubmitError',
      /frame size: settings width and height/,
    )
    throwsNamed(
      () => compile(still({ tiles: 256, settings: { scene: 'a.blend', width: 10, height: 10 } })),
      'InvalidSubmitError',
      /10x10 frame cannot be cut into 16x16 tiles/,
    )
    for (const tiles of [0, 257, 2.5, '4' as unknown as number]) {
      throwsNamed(
        () => compile(still({ tiles })),
        'InvalidSubmitError',
        /tiles must be an integer from 1 to 256/,
      )
    }
  })
})

describe('{border}', () => {
  it("is 'none' for whole frames and each task's tile border for a tiled job", () => {
    const blender = getApp('blender')
    const phase = blender.phases[0]!
    const borderOf = (spec: JobSpec, i: number) => renderEnv(blender, phase, spec, i, run).OPENFARM_BORDER
    assert.equal(borderOf(compile(still({ tiles: 1 })), 0), 'none')
    const spec = compile(still())
    const borders = [0, 1, 2, 3].map((i) => borderOf(spec, i))
    assert.deepEqual(
      borders,
      [0, 1, 2, 3].map((i) => borderArg(tileRect(i, tileGrid(4), 96, 54))),
    )
    assert.equal(borders[3], `${48.5 / 96},1,0,${27.5 / 54}`)
    // every tile task renders frame 7 alone
    const argv = renderArgv(blender, phase, spec, 3, run)
    assert.deepEqual(argv.slice(argv.indexOf('-s'), argv.indexOf('-s') + 4), ['-s', '7', '-e', '7'])
  })

  it('fails the task with a clear reason when a peer stored a tiled job without a frame size', () => {
    const blender = getApp('blender')
    const spec = { ...compile(still()), args: { scene: 'a.blend', denoise: 'keep' } }
    // the worker renders the phase's argv and environment in one step: the environment carries the border
    throwsNamed(
      () => renderEnv(blender, blender.phases[0]!, spec, 1, run),
      'InvalidTemplateError',
      /frame size/,
    )
  })
})

describe('{...stitch}', () => {
  const stitch = getApp('stitch')
  const job = (extra: Partial<SubmitInput> = {}) =>
    compile({ app: 'stitch', frames: '7', settings: { tiles: 4, ...size }, ...extra })

  it('is the ffmpeg argv over the tiles in <indir>/tiles into <outdir>/frame_NNNN.png, nothing else', () => {
    const argv = renderArgv(stitch, stitch.phases[0]!, job(), 0, run)
    const tiles = tilesOf(tileGrid(4), 96, 54)
    const inputs = [0, 1, 2, 3].map((i) => `/farm/task/in/tiles/frame_0007_tile_00${i}.png`)
    assert.deepEqual(argv, stitchArgv(tiles, inputs, '/farm/task/out/frame_0007.png'))
    assert.equal(argv[0], 'ffmpeg')
    assert.equal(argv.at(-1), '/farm/task/out/frame_0007.png')
    assert.equal(stitch.phases[0]!.argv.length, 1, 'the config holds the splice alone')
  })

  it('takes only integers from the job, and needs the run context', () => {
    const bad: Record<string, string | number>[] = [
      { tiles: 4, width: 96, height: '54 -y /etc/passwd' },
      { tiles: 1, ...size },
      { tiles: 4, ...size, output: '/tmp/x.png' },
      { tiles: 4, width: 96 },
    ]
    for (const settings of bad) {
      assert.throws(() => job({ settings }), { name: 'InvalidSettingsError' }, JSON.stringify(settings))
    }
    throwsNamed(() => job({ chunk: 2, frames: '7-8' }), 'InvalidSubmitError', /chunk must be 1/)
    throwsNamed(
      () => renderArgv(stitch, stitch.phases[0]!, job(), 0),
      'InvalidTemplateError',
      /filled by the worker/,
    )
  })

  it('is a runner splice: no setting may take its name, and it needs frames', () => {
    const base: AppDef = {
      name: 'mystitch',
      description: 'd',
      enabledByDefault: false,
      detect: null,
      settings: {},
      phases: [{ name: 'run', argv: ['{...stitch}'] }],
      usesFrames: true,
    }
    checkAppDef(base)
    assert.throws(
      () => checkAppDef({ ...base, usesFrames: false }),
      /\{\.\.\.stitch\} in an app without frames/,
    )
    for (const name of ['stitch', 'border']) {
      const settings = { [name]: { type: 'string' as const, format: 'argv' as const, description: 'x' } }
      assert.throws(() => checkAppDef({ ...base, settings }), /reserved/)
    }
  })
})
