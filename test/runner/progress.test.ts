import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { getApp } from '../../src/runner/apps.ts'
import { clockSeconds, ESTIMATE_CAP, type Progress, ProgressParser } from '../../src/runner/progress.ts'

// Real output of this machine's Blender 3.4.1 (test/fixtures/blender/*.txt, captured with the test scene).
const captured = (name: string): string[] =>
  readFileSync(fileURLToPath(new URL(`../fixtures/blender/${name}`, import.meta.url)), 'utf8').split('\n')

function run(name: string | string[], frames: number, app = getApp('blender')) {
  const parser = new ProgressParser(app, frames)
  const seen: Progress[] = []
  for (const line of typeof name === 'string' ? captured(name) : name) {
    const p = parser.push(line)
    if (p !== null) seen.push(p)
  }
  return { seen, last: parser.progress }
}

function assertMonotonic(seen: readonly Progress[]) {
  for (let i = 1; i < seen.length; i++) {
    assert.ok(seen[i]!.fraction >= seen[i - 1]!.fraction, `fraction went down at update ${i}`)
    assert.ok(seen[i]!.framesDone >= seen[i - 1]!.framesDone, `framesDone went down at update ${i}`)
  }
}

// Sample counts that go down within one frame in the raw output (what the parser must smooth over).
function rawDips(lines: readonly string[]): number {
  let dips = 0
  let prev = -1
  let frame = ''
  for (const line of lines) {
    const f = /^Fra:(\d+)/.exec(line)?.[1]
    const m = /Sample (\d+)\//.exec(line)
    if (f === undefined || m === null) continue
    if (f === frame && Number(m[1]) < prev) dips++
    frame = f
    prev = Number(m[1])
  }
  return dips
}

describe('ProgressParser on real Blender 3.4 output', () => {
  it('Cycles, frames 1-3: frames counted from Saved lines, samples within a frame', () => {
    const { seen, last } = run('cycles_frames_1_3.txt', 3)
    assertMonotonic(seen)
    assert.deepEqual(last, { frame: 3, framesDone: 3, fraction: 1 })
    assert.deepEqual([...new Set(seen.map((p) => p.frame))], [1, 2, 3])
    // Sample 1/8 of frame 1 is 1/24 of the task; frame 1 saved is a third.
    assert.ok(seen.some((p) => p.frame === 1 && Math.abs(p.fraction - 1 / 24) < 1e-9))
    const afterFirst = seen.find((p) => p.framesDone === 1)
    assert.ok(afterFirst !== undefined && Math.abs(afterFirst.fraction - 1 / 3) < 1e-9)
  })

  it('Cycles with auto-tiles: tiles and samples, kept monotonic where the raw count dips', () => {
    const lines = captured('cycles_autotile.txt')
    assert.ok(rawDips(lines) >= 8, 'the captured output has dips to smooth over')
    const { seen, last } = run('cycles_autotile.txt', 2)
    assertMonotonic(seen)
    assert.deepEqual(last, { frame: 5, framesDone: 2, fraction: 1 })
    // Frame 4: 'Rendered 3/6 Tiles, Sample 1/64' is (3 + 1/64) / 6 of the frame, half of that of the task.
    assert.ok(seen.some((p) => p.frame === 4 && Math.abs(p.fraction - (3 + 1 / 64) / 12) < 1e-9))
    assert.ok(seen.filter((p) => p.frame === 4).length >= 8, 'per-tile progress within the frame')
  })

  it('Cycles with adaptive sampling: many sample lines, one frame', () => {
    const { seen, last } = run('cycles_adaptive.txt', 1)
    assertMonotonic(seen)
    assert.ok(seen.length >= 20)
    assert.ok(seen.some((p) => Math.abs(p.fraction - 256 / 512) < 1e-9))
    assert.deepEqual(last, { frame: 1, framesDone: 1, fraction: 1 })
  })

  it('Eevee: "Rendering N / M samples"', () => {
    const { seen, last } = run('eevee.txt', 2)
    assertMonotonic(seen)
    assert.ok(seen.some((p) => p.frame === 6 && Math.abs(p.fraction - 1 / 32) < 1e-9))
    assert.deepEqual(last, { frame: 7, framesDone: 2, fraction: 1 })
  })

  it('Workbench prints only Saved lines', () => {
    const { seen, last } = run('workbench.txt', 2)
    assert.deepEqual(
      seen.map((p) => [p.framesDone, p.fraction]),
      [
        [1, 0.5],
        [2, 1],
      ],
    )
    assert.equal(last.frame, null)
  })

  it('a failed render never reaches 1', () => {
    const { last } = run('cycles_denoise_fail.txt', 2)
    assert.equal(last.framesDone, 0)
    assert.equal(last.frame, 1)
    assert.ok(last.fraction < 0.5)
  })

  it('counts frames from ffmpeg -progress lines, capped at the task', () => {
    const lines = ['frame=1', 'fps=0.00', 'progress=continue', 'frame=9', 'progress=end', 'frame=12']
    const { seen, last } = run(lines, 10, getApp('ffmpeg'))
    assertMonotonic(seen)
    assert.deepEqual(
      seen.map((p) => p.framesDone),
      [1, 9, 10],
    )
    assert.equal(last.fraction, 1)
  })

  it("moves a frame of one tile on between its lines by Blender's own estimate, short of done", () => {
    // Cycles, one tile, 400 samples, no adaptive sampling: Blender prints samples 0, 1 and 400 only
    const lines = captured('cycles_one_tile.txt')
    const first = lines.findIndex((l) => l.endsWith('| Sample 1/400'))
    assert.match(lines[first]!, /\| Time:00:00\.24 \| Remaining:00:15\.24 \|/)
    let clock = 1000
    const parser = new ProgressParser(getApp('blender'), 2, () => clock)
    assert.equal(parser.tick(), null, 'no estimate yet')
    const seen: Progress[] = []
    for (const line of lines.slice(0, first + 1)) {
      const p = parser.push(line)
      if (p !== null) seen.push(p)
    }
    assert.equal(parser.progress.fraction, 1 / 400 / 2)
    // 5 s later the frame is (0.24 + 5) / 15.48 done, by Blender's estimate: of the task's 2 frames
    clock += 5000
    const moved = parser.tick()
    assert.ok(moved !== null)
    seen.push(moved)
    assert.ok(Math.abs(moved.fraction - (0.24 + 5) / 15.48 / 2) < 1e-9, String(moved.fraction))
    assert.deepEqual([moved.frame, moved.framesDone], [1, 0])
    assert.equal(parser.tick(), null, 'no time passed, nothing changed')
    // long past the estimate, the frame is not done until Blender saved it
    clock += 600_000
    seen.push(parser.tick()!)
    assert.equal(parser.progress.fraction, ESTIMATE_CAP / 2)
    for (const line of lines.slice(first + 1)) {
      const p = parser.push(line)
      if (p !== null) seen.push(p)
    }
    assertMonotonic(seen)
    assert.deepEqual(parser.progress, { frame: 1, framesDone: 1, fraction: 0.5 })
    // the saved frame's estimate does not move the next one
    clock += 5000
    assert.equal(parser.tick(), null)
  })

  it("reads Blender's times", () => {
    assert.equal(clockSeconds('00:15.24'), 15.24)
    assert.equal(clockSeconds('01:02:03.50'), 3723.5)
    assert.ok(Number.isNaN(clockSeconds('')))
    assert.ok(Number.isNaN(clockSeconds('15.24')))
  })

  it('ignores lines of no interest and says nothing when nothing changed', () => {
    const parser = new ProgressParser(getApp('blender'), 2)
    assert.equal(parser.push('Blender 3.4.1'), null)
    assert.equal(parser.push(' Time: 00:00.37 (Saving: 00:00.23)'), null)
    assert.notEqual(parser.push('Fra:1 Mem:9.67M | Time:00:00.12 | Shot, ViewLayer | Sample 0/8'), null)
    assert.equal(parser.push('Fra:1 Mem:9.67M | Time:00:00.12 | Shot, ViewLayer | Sample 0/8'), null)
    assert.equal(new ProgressParser(getApp('echo'), 0).push('frames 1-4: hello'), null)
  })
})
