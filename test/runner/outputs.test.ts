import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdir, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { getApp } from '../../src/runner/apps.ts'
import { checkOutputs, framesOf, OutputTracker, ranges } from '../../src/runner/outputs.ts'
import { tempDir } from '../helpers.ts'

const blender = getApp('blender')
// Real output captured into /tmp/bexp/cap; each test points it at its own output directory.
const captured = (name: string, outdir: string): string[] =>
  readFileSync(fileURLToPath(new URL(`../fixtures/blender/${name}`, import.meta.url)), 'utf8')
    .replaceAll('/tmp/bexp/cap', outdir)
    .split('\n')

describe('checkOutputs', () => {
  let tmp: { path: string; remove: () => Promise<void> }
  let n = 0
  const outdir = async (frames: number[] = []) => {
    const dir = join(tmp.path, `out${n++}`)
    await mkdir(dir)
    for (const f of frames) await writeFile(join(dir, `frame_${String(f).padStart(4, '0')}.png`), 'png')
    return dir
  }
  before(async () => {
    tmp = await tempDir('outputs')
  })
  after(() => tmp.remove())

  it('accepts one Saved line per expected frame with the files in place', async () => {
    const dir = await outdir([1, 2, 3])
    const r = await checkOutputs(blender, captured('cycles_frames_1_3.txt', dir), [1, 2, 3], dir)
    assert.deepEqual(r, {
      ok: true,
      reason: null,
      files: [1, 2, 3].map((frame) => ({ frame, path: join(dir, `frame_000${frame}.png`), bytes: 3 })),
    })
  })

  it('does not look again at a frame the store took whole from the path its Saved line names', async () => {
    const dir = await outdir([1, 3]) // frame 2 was stored, and is gone from the directory since
    const t = new OutputTracker(blender)
    for (const line of captured('cycles_frames_1_3.txt', dir)) t.push(line)
    const two = join(dir, 'frame_0002.png')
    const r = await t.check([1, 2, 3], dir, new Map([[2, { path: two, bytes: 9 }]]))
    assert.equal(r.ok, true)
    assert.deepEqual(r.files[1], { frame: 2, path: two, bytes: 9 })
    // stored from another path, or empty: looked at, and found missing
    for (const known of [
      { path: join(dir, 'elsewhere.png'), bytes: 9 },
      { path: two, bytes: 0 },
    ]) {
      const again = await t.check([1, 2, 3], dir, new Map([[2, known]]))
      assert.equal(again.ok, false)
      assert.match(again.reason ?? '', /frame 2: .*frame_0002\.png does not exist/)
    }
  })

  it('names the missing frames', async () => {
    const dir = await outdir([1, 2, 3])
    const r = await checkOutputs(blender, captured('cycles_frames_1_3.txt', dir), framesOf(1, 4), dir)
    assert.equal(r.ok, false)
    assert.equal(r.reason, 'Blender saved 3 of 4 frames (missing 4)')
  })

  it('fails an exit-0 run that saved nothing, and quotes Blender’s own error', async () => {
    const dir = await outdir()
    const quiet = await checkOutputs(
      blender,
      ['Blender 3.4.1', 'Read blend: /x.blend', '', 'Blender quit'],
      [1, 2],
      dir,
    )
    assert.equal(quiet.reason, 'Blender saved 0 of 2 frames (missing 1-2)')
    const failed = await checkOutputs(blender, captured('cycles_denoise_fail.txt', dir), [1, 2], dir)
    assert.equal(
      failed.reason,
      'Blender saved 0 of 2 frames (missing 1-2): Error: Build without OpenImageDenoiser',
    )
  })

  it('does not take a Saved line for the file: missing, empty, outside, not a regular file', async () => {
    const dir = await outdir()
    const saved = (path: string) => [
      'Fra:1 Mem:9.84M | Time:00:00.13 | Shot, ViewLayer | Finished',
      `Saved: '${path}'`,
    ]
    const missing = await checkOutputs(blender, saved(join(dir, 'frame_0001.png')), [1], dir)
    assert.match(missing.reason ?? '', /^Blender frame 1: .*frame_0001\.png does not exist$/)
    await writeFile(join(dir, 'empty.png'), '')
    const empty = await checkOutputs(blender, saved(join(dir, 'empty.png')), [1], dir)
    assert.match(empty.reason ?? '', /frame 1: .*empty\.png is empty$/)
    await writeFile(join(tmp.path, 'outside.png'), 'png')
    for (const path of [join(tmp.path, 'outside.png'), join(dir, '..', 'outside.png')]) {
      const outside = await checkOutputs(blender, saved(path), [1], dir)
      assert.match(outside.reason ?? '', /outside\.png is outside the output directory$/)
    }
    await symlink(join(tmp.path, 'outside.png'), join(dir, 'link.png'))
    const link = await checkOutputs(blender, saved(join(dir, 'link.png')), [1], dir)
    assert.match(link.reason ?? '', /link\.png is not a regular file$/)
  })

  it('takes the frame from the file name where Blender prints no Fra: line (Workbench)', async () => {
    const dir = await outdir([8, 9])
    const r = await checkOutputs(blender, captured('workbench.txt', dir), [8, 9], dir)
    assert.equal(r.ok, true)
    assert.deepEqual(
      r.files.map((f) => f.frame),
      [8, 9],
    )
  })

  it('checks an app without output lines by the files in the output directory (ffmpeg)', async () => {
    const ffmpeg = getApp('ffmpeg')
    const dir = await outdir()
    const none = await checkOutputs(ffmpeg, ['frame=12', 'progress=end'], [], dir)
    assert.equal(none.reason, `ffmpeg wrote no file in ${dir}`)
    await writeFile(join(dir, 'video.mp4'), 'mp4')
    const one = await checkOutputs(ffmpeg, [], [], dir)
    assert.deepEqual(one, {
      ok: true,
      reason: null,
      files: [{ frame: null, path: join(dir, 'video.mp4'), bytes: 3 }],
    })
    const gone = await checkOutputs(ffmpeg, [], [], join(dir, 'nope'))
    assert.match(gone.reason ?? '', /output directory .*nope not found/)
    assert.deepEqual(await checkOutputs(getApp('echo'), [], [1], dir), { ok: true, files: [], reason: null })
  })

  it('formats frame lists as ranges', () => {
    assert.equal(ranges([7, 1, 2, 3, 9, 10]), '1-3, 7, 9-10')
    assert.deepEqual(framesOf(1, 10, 4), [1, 5, 9])
  })
})
