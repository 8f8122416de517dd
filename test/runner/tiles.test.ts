import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { getApp } from '../../src/runner/apps.ts'
import { renderArgv, renderEnv } from '../../src/runner/argv.ts'
import {
  borderArg,
  frameFileName,
  stitchArgv,
  tileGrid,
  tilePath,
  tileRect,
  tilesOf,
} from '../../src/runner/blender/tiles.ts'
import { compileJob } from '../../src/runner/compile.ts'
import { runPhase } from '../../src/runner/execute.ts'
import { checkOutputs } from '../../src/runner/outputs.ts'
import { blenderMissing, makeTestScene, type TestScene } from '../fixtures/blender/make-scene.ts'
import { tempDir } from '../helpers.ts'

const missing = await blenderMissing()

async function run(argv: string[], cwd: string, env: Record<string, string> = {}) {
  const lines: string[] = []
  const result = await runPhase(argv, {
    cwd,
    env: { ...env, TMPDIR: cwd },
    signal: AbortSignal.timeout(60_000),
    onLine: (_s, l) => lines.push(l),
  })
  assert.equal(result.ok, true, `${result.reason}\n${lines.slice(-10).join('\n')}`)
  return lines
}

const md5 = async (file: string, cwd: string, filter: string[] = []) =>
  (await run(['ffmpeg', '-v', 'error', '-i', file, ...filter, '-f', 'md5', '-'], cwd)).find((l) =>
    l.startsWith('MD5='),
  )!

describe('tiles (pure)', () => {
  it('picks the most square grid', () => {
    assert.deepEqual(
      [1, 2, 4, 6, 7, 9, 12].map((n) => tileGrid(n)),
      [
        { cols: 1, rows: 1 },
        { cols: 2, rows: 1 },
        { cols: 2, rows: 2 },
        { cols: 3, rows: 2 },
        { cols: 7, rows: 1 },
        { cols: 3, rows: 3 },
        { cols: 4, rows: 3 },
      ],
    )
    for (const n of [0, -1, 1.5, 257]) assert.throws(() => tileGrid(n), { name: 'InvalidSubmitError' })
  })

  it('cuts the frame into tiles that cover it exactly, borders from the bottom with half-pixel offsets', () => {
    const grid = { cols: 5, rows: 4 }
    const tiles = tilesOf(grid, 96, 54)
    const covered = new Uint8Array(96 * 54)
    for (const t of tiles) {
      for (let y = t.y; y < t.y + t.height; y++)
        for (let x = t.x; x < t.x + t.width; x++) covered[y * 96 + x]! += 1
    }
    assert.ok(covered.every((c) => c === 1))
    assert.deepEqual(
      tiles.slice(0, 5).map((t) => t.width),
      [19, 19, 19, 19, 20],
    )
    assert.deepEqual(
      tiles.filter((t) => t.x === 0).map((t) => t.height),
      [13, 14, 13, 14],
    )
    const first = tileRect(0, grid, 96, 54)
    assert.deepEqual(first.border, { minX: 0, maxX: 19.5 / 96, minY: 41.5 / 54, maxY: 1 })
    assert.equal(borderArg(first), `0,${19.5 / 96},${41.5 / 54},1`)
    const last = tileRect(19, grid, 96, 54)
    assert.deepEqual(last.border, { minX: 76.5 / 96, maxX: 1, minY: 0, maxY: 14.5 / 54 })
    assert.throws(() => tileRect(20, grid, 96, 54), { name: 'InvalidSubmitError' })
    assert.throws(() => tileRect(0, { cols: 200, rows: 1 }, 96, 54), { name: 'InvalidSubmitError' })
  })

  it('builds the crop + xstack argv', () => {
    const tiles = tilesOf({ cols: 2, rows: 2 }, 320, 180)
    assert.deepEqual(stitchArgv(tiles, ['a.png', 'b.png', 'c.png', 'd.png'], 'out.png'), [
      ...['ffmpeg', '-y', '-v', 'error', '-nostdin'],
      ...['-i', 'a.png', '-i', 'b.png', '-i', 'c.png', '-i', 'd.png'],
      '-filter_complex',
      '[0:v]crop=160:90:0:0:exact=1[t0];[1:v]crop=160:90:160:0:exact=1[t1];' +
        '[2:v]crop=160:90:0:90:exact=1[t2];[3:v]crop=160:90:160:90:exact=1[t3];' +
        '[t0][t1][t2][t3]xstack=inputs=4:layout=0_0|160_0|0_90|160_90',
      ...['-frames:v', '1', '-update', '1', 'out.png'],
    ])
    assert.deepEqual(stitchArgv(tilesOf({ cols: 1, rows: 1 }, 8, 8), ['a.png'], 'o.png').slice(5), [
      ...['-i', 'a.png', '-vf', 'crop=8:8:0:0:exact=1', '-frames:v', '1', '-update', '1', 'o.png'],
    ])
    assert.throws(() => stitchArgv(tiles, ['a.png'], 'o.png'), { name: 'InvalidSubmitError' })
  })

  it('names frames as Blender does and tiles apart', () => {
    assert.deepEqual([7, 12345, 0, -5].map(frameFileName), [
      'frame_0007.png',
      'frame_12345.png',
      'frame_0000.png',
      'frame_-0005.png',
    ])
    assert.equal(tilePath(7, 3), 'tiles/frame_0007_tile_003.png')
    assert.equal(tilePath(7, 255), 'tiles/frame_0007_tile_255.png')
  })
})

describe('tiles with the real Blender', { skip: missing ?? false }, () => {
  let tmp: { path: string; remove: () => Promise<void> }
  let scene: TestScene
  before(async () => {
    tmp = await tempDir('tiles')
    scene = await makeTestScene(tmp.path)
  })
  after(() => tmp?.remove())

  it('stitched tiles of an uneven 5x4 grid are pixel-identical to the full frame, dither and all', async () => {
    const dir = join(tmp.path, 'grid')
    await mkdir(dir)
    const tiles = tilesOf({ cols: 5, rows: 4 }, 96, 54)
    const inputs = tiles.map((t) => join(dir, `tile_${t.index}.png`))
    // One Blender process renders the full frame and every tile as prep.py does (uncropped border,
    // the scene's own dither); a farm runs one process per tile.
    const spec = join(dir, 'tiles.json')
    const b = tiles.map((t) => [t.border.minX, t.border.maxX, t.border.minY, t.border.maxY])
    await writeFile(spec, JSON.stringify({ full: join(dir, 'full.png'), tiles: b, out: inputs }))
    const script = [
      'import bpy, json, sys',
      'spec = json.load(open(sys.argv[sys.argv.index("--") + 1]))',
      's = bpy.context.scene; r = s.render; s.frame_set(1)',
      'assert r.dither_intensity > 0, "the scene must dither for this test to mean something"',
      'r.image_settings.file_format = "PNG"; r.use_file_extension = False',
      'r.filepath = spec["full"]; bpy.ops.render.render(write_still=True)',
      'r.use_border = True; r.use_crop_to_border = False',
      'for (r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y), out in zip(spec["tiles"], spec["out"]):',
      '    r.filepath = out; bpy.ops.render.render(write_still=True)',
    ].join('\n')
    await run(
      ['blender', '-b', scene.blend, '-Y', '--python-exit-code', '1', '--python-expr', script, '--', spec],
      dir,
    )
    const stitched = join(dir, 'stitched.png')
    await run(stitchArgv(tiles, inputs, stitched), dir)
    const size = await run(
      ['ffprobe', '-v', 'error', '-show_entries', 'stream=width,height', '-of', 'csv=p=0', stitched],
      dir,
    )
    assert.equal(size[0], '96,54')
    assert.equal(await md5(stitched, dir), await md5(join(dir, 'full.png'), dir))
  })

  it("prep.py renders a tiled job's task as an uncropped border holding that crop of the full frame", async () => {
    const dir = join(tmp.path, 'one')
    for (const d of ['in', 'out', 'tmp']) await mkdir(join(dir, d), { recursive: true })
    const blender = getApp('blender')
    const job = compileJob(
      { app: 'blender', frames: '1', tiles: 9, settings: { scene: 'main.blend', width: 96, height: 54 } },
      { id: 'j', peer: 'p', now: 0 },
    )
    const ctx = {
      scene: scene.blend,
      indir: join(dir, 'in'),
      outdir: join(dir, 'out'),
      workdir: dir,
      threads: 2,
      device: 'CPU',
    } as const
    const tile = tileRect(6, tileGrid(9), 96, 54)
    const argv = renderArgv(blender, blender.phases[0]!, job, 6, ctx)
    const env = renderEnv(blender, blender.phases[0]!, job, 6, ctx)
    assert.equal(env.OPENFARM_BORDER, borderArg(tile))
    const lines = await run(argv, dir, env)
    assert.ok(lines.includes(`OpenFarm: rendering the tile ${borderArg(tile)} of the frame`))
    const out = await checkOutputs(blender, lines, [1], ctx.outdir)
    assert.equal(out.ok, true, out.reason ?? '')
    const full = join(dir, 'full')
    await run(['blender', '-b', scene.blend, '-Y', '-o', `${full}_#`, '-F', 'PNG', '-x', '1', '-f', '1'], dir)
    const crop = ['-vf', `crop=${tile.width}:${tile.height}:${tile.x}:${tile.y}`]
    assert.equal(await md5(out.files[0]!.path, dir, crop), await md5(`${full}_1.png`, dir, crop))
    // the rest of the image is empty: only the border was rendered
    assert.notEqual(await md5(out.files[0]!.path, dir), await md5(`${full}_1.png`, dir))
  })
})

if (missing !== null) {
  describe('tiles with the real Blender', () => {
    it('needs Blender', (t) => t.skip(missing))
  })
}
