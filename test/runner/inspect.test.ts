import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { inspectBlend } from '../../src/runner/blender/inspect.ts'
import { blenderMissing, makeTestScene, type TestScene } from '../fixtures/blender/make-scene.ts'
import { tempDir } from '../helpers.ts'

const missing = await blenderMissing()

describe('inspectBlend (real Blender)', { skip: missing ?? false }, () => {
  let tmp: { path: string; remove: () => Promise<void> }
  let scene: TestScene
  before(async () => {
    tmp = await tempDir('inspect')
    scene = await makeTestScene(tmp.path)
  })
  after(() => tmp?.remove())

  it('reads range, fps, resolution, engine, samples, denoise and the dependencies of the test scene', async () => {
    const info = await inspectBlend(scene.blend)
    assert.equal(info.blenderVersion.split('.').length >= 2, true)
    assert.equal(info.file, scene.blend)
    assert.deepEqual([info.frameStart, info.frameEnd, info.frameStep, info.fps], [1, 12, 1, 24])
    assert.deepEqual([info.resolutionX, info.resolutionY, info.resolutionPercentage], [96, 54, 100])
    assert.deepEqual([info.engine, info.samples, info.denoise], ['CYCLES', 8, false])
    assert.equal(info.hasOpenImageDenoise, false, "Debian's Blender is built without OpenImageDenoise")
    assert.equal(info.fileFormat, 'PNG')
    assert.equal(info.framePath, join(tmp.path, 'shot', 'render', 'shot_0001.png'))
    assert.equal(info.camera, 'Camera')
    assert.deepEqual(info.dependencies, [
      { kind: 'image', written: '//../textures/wood.png', absolute: scene.texture, exists: true },
      { kind: 'library', written: scene.library, absolute: scene.library, exists: true },
    ])
    assert.deepEqual(info.notes, [])
  })

  it('sees denoising on in the denoise variant', async () => {
    const info = await inspectBlend(scene.denoiseBlend)
    assert.equal(info.denoise, true)
  })

  it('lists sequences file by file, UDIM tiles, sounds and missing files, but not packed ones', async () => {
    const info = await inspectBlend(scene.depsBlend)
    const d = join(tmp.path, 'deps')
    const seq = (n: number) => ({
      kind: 'image',
      written: '//seq/seq_0001.png',
      absolute: join(d, 'seq', `seq_000${n}.png`),
      exists: true,
      note: 'image sequence: 3 files matching seq_<digits>.png',
    })
    const tile = (n: number) => ({
      kind: 'image',
      written: '//udim/paint.<UDIM>.png',
      absolute: join(d, 'udim', `paint.${n}.png`),
      exists: true,
      note: `UDIM tile ${n}`,
    })
    assert.deepEqual(info.dependencies, [
      {
        kind: 'image',
        written: '//missing/gone.png',
        absolute: join(d, 'missing', 'gone.png'),
        exists: false,
      },
      seq(1),
      seq(2),
      seq(3),
      tile(1001),
      tile(1002),
      { kind: 'sound', written: '//sound/beep.wav', absolute: join(d, 'sound', 'beep.wav'), exists: true },
    ])
    assert.deepEqual(info.notes, ['the scene has no camera: Blender cannot render it'])
  })

  it('turns a truncated file and a text file into CorruptBlendError with Blender’s reason', async () => {
    const bytes = await readFile(scene.blend)
    const truncated = join(tmp.path, 'truncated.blend')
    await writeFile(truncated, bytes.subarray(0, 100_000))
    const text = join(tmp.path, 'notes.blend')
    await writeFile(text, 'this is not a blend file\n')
    for (const [file, reason] of [
      [truncated, /Missing DNA block/],
      [text, /File format is not supported/],
    ] as const) {
      await assert.rejects(inspectBlend(file), (err: Error) => {
        assert.equal(err.name, 'CorruptBlendError')
        assert.match(err.message, reason)
        assert.doesNotMatch(err.message, /\n/)
        return true
      })
    }
  })

  it('says clearly when the file is missing, Blender is missing, or it takes too long', async () => {
    await assert.rejects(inspectBlend(join(tmp.path, 'nope.blend')), {
      name: 'InspectError',
      message: /no such file/,
    })
    await assert.rejects(inspectBlend(scene.blend, { blender: 'openfarm-no-blender' }), {
      name: 'InspectError',
      message: /command not found: openfarm-no-blender/,
    })
    await assert.rejects(inspectBlend(scene.blend, { timeoutMs: 50 }), {
      name: 'InspectError',
      message: /timed out/,
    })
  })
})

if (missing !== null) {
  describe('inspectBlend', () => {
    it('needs Blender', (t) => t.skip(missing))
  })
}
