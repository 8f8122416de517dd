// Pulling outputs into a directory: the path checks, never replacing a different file unless asked,
// and a symlinked directory on the way refused. The blob layer is a small in-memory stand-in here
// (the real one is tested in test/protocol/blobs.test.ts and end to end in test/render).

import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { lstat, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { describe, it, test } from 'node:test'
import { format } from 'node:util'
import type { Logger } from '@libp2p/interface'
import * as Y from 'yjs'
import { FarmDoc } from '../../src/crdt/farmdoc.ts'
import type { OutputRecord } from '../../src/crdt/files.ts'
import { DestinationExistsError } from '../../src/node/blobs/errors.ts'
import {
  type BlobAccess,
  insideDir,
  PREFETCH_WINDOW_BYTES,
  PULL_CONCURRENCY,
  pullOutputs,
  safeTarget,
} from '../../src/node/homes.ts'
import { OutputHomes } from '../../src/node/outputhomes.ts'
import { spec } from '../crdt/fixtures.ts'
import { tempDir, waitFor } from '../helpers.ts'

function blobs(contents: string[]): {
  access: BlobAccess
  hashes: string[]
  fetched: string[][]
  homes: [string, string][]
} {
  const byHash = new Map(contents.map((c) => [createHash('sha256').update(c).digest('hex'), c]))
  const fetched: string[][] = []
  const homes: [string, string][] = []
  return {
    hashes: [...byHash.keys()],
    fetched,
    homes,
    access: {
      keepHome: async (hash, path) => {
        homes.push([hash, path])
      },
      fetch: async (hash, o) => {
        if (!byHash.has(hash)) throw new Error('no holder')
        fetched.push([hash, ...(o.from ?? [])])
      },
      // as the store's: makes the directory, replaces only when asked, never a file of other bytes
      copyOut: async (hash, dest, o) => {
        await mkdir(dirname(dest), { recursive: true })
        const bytes = byHash.get(hash)!
        if (o?.replace) return writeFile(dest, bytes)
        try {
          await writeFile(dest, bytes, { flag: 'wx' })
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
          if ((await readFile(dest, 'utf8')) !== bytes) throw new DestinationExistsError(`${dest} exists`)
        }
      },
    },
  }
}

const rec = (path: string, hash: string): OutputRecord => ({
  path,
  hash,
  size: 1,
  frame: 1,
  task: 0,
  attempt: 0,
  peer: 'pMaker',
})

test('outputs come home once, from their maker, and a different file already there is kept', async () => {
  const dir = await tempDir('homes')
  try {
    const b = blobs(['frame one', 'frame two', 'other'])
    const [one, two, other] = b.hashes as [string, string, string]
    const out = join(dir.path, 'render')
    await mkdir(out)
    await writeFile(join(out, 'frame_0002.png'), 'made by hand')
    const known = new Map<string, string>()
    const r = await pullOutputs(b.access, [rec('frame_0001.png', one), rec('frame_0002.png', two)], out, {
      known,
    })
    assert.deepEqual([r.written, r.conflicts, r.failed], [['frame_0001.png'], ['frame_0002.png'], []])
    assert.equal(await readFile(join(out, 'frame_0002.png'), 'utf8'), 'made by hand')
    assert.deepEqual(b.fetched, [[one, 'pMaker']])
    // again: nothing fetched; a re-render with other bytes does not replace what came home first
    const again = await pullOutputs(b.access, [rec('frame_0001.png', other)], out, { known })
    assert.deepEqual([again.written, again.conflicts], [[], ['frame_0001.png']])
    // --overwrite: a file that was there before the job may be replaced
    const over = await pullOutputs(b.access, [rec('frame_0002.png', two)], out, { overwrite: true })
    assert.deepEqual(over.written, ['frame_0002.png'])
    assert.equal(await readFile(join(out, 'frame_0002.png'), 'utf8'), 'frame two')
    // a file found with the output's bytes (hashed) counts as a home copy too
    await pullOutputs(b.access, [rec('frame_0002.png', two)], out)
    // each verified copy in the directory is kept as the blob's home copy, to serve it from later
    assert.deepEqual(b.homes, [
      [one, join(out, 'frame_0001.png')],
      [two, join(out, 'frame_0002.png')],
      [two, join(out, 'frame_0002.png')],
    ])
  } finally {
    await dir.remove()
  }
})

test('a newer record of an output this job brought home replaces it; a file there before stays', async () => {
  const dir = await tempDir('homes')
  try {
    const b = blobs(['attempt 0', 'attempt 1', 'made by hand'])
    const [first, again] = b.hashes as [string, string, string]
    const out = join(dir.path, 'render')
    await mkdir(out)
    await writeFile(join(out, 'frame_0002.png'), 'made by hand')
    const known = new Map<string, string>()
    const wrote = new Set<string>()
    const opts = { known, wrote, overwrite: false }
    await pullOutputs(b.access, [rec('frame_0001.png', first)], out, opts)
    // the worker died mid-chunk; another host rendered the chunk again, with other bytes
    const r = await pullOutputs(
      b.access,
      [rec('frame_0001.png', again), rec('frame_0002.png', again)],
      out,
      opts,
    )
    assert.deepEqual([r.written, r.conflicts], [['frame_0001.png'], ['frame_0002.png']])
    assert.equal(await readFile(join(out, 'frame_0001.png'), 'utf8'), 'attempt 1')
    assert.equal(await readFile(join(out, 'frame_0002.png'), 'utf8'), 'made by hand')
  } finally {
    await dir.remove()
  }
})

test('a directory or a FIFO where an output goes is kept and reported, not read, and the rest comes home', {
  timeout: 20_000,
}, async () => {
  const dir = await tempDir('homes')
  try {
    const b = blobs(['frame one', 'frame two', 'frame three'])
    const [one, two, three] = b.hashes as [string, string, string]
    const out = join(dir.path, 'render')
    await mkdir(join(out, 'frame_0001.png'), { recursive: true })
    execFileSync('mkfifo', [join(out, 'frame_0002.png')])
    const outputs = [rec('frame_0001.png', one), rec('frame_0002.png', two), rec('frame_0003.png', three)]
    for (const overwrite of [false, true]) {
      const r = await pullOutputs(b.access, outputs, out, { overwrite })
      assert.deepEqual(r.conflicts, ['frame_0001.png', 'frame_0002.png'], `overwrite: ${overwrite}`)
      assert.deepEqual(r.failed, [])
    }
    assert.equal(await readFile(join(out, 'frame_0003.png'), 'utf8'), 'frame three')
    assert.ok((await lstat(join(out, 'frame_0001.png'))).isDirectory())
    assert.ok((await lstat(join(out, 'frame_0002.png'))).isFIFO())
  } finally {
    await dir.remove()
  }
})

test('a path never leaves the directory: .., absolute, symlinked directories', async () => {
  const dir = await tempDir('homes')
  try {
    const out = join(dir.path, 'render')
    await mkdir(join(dir.path, 'elsewhere'), { recursive: true })
    await mkdir(out)
    await symlink(join(dir.path, 'elsewhere'), join(out, 'link'))
    for (const bad of ['../x.png', '/etc/passwd', 'a/../../x', 'link/x.png']) {
      await assert.rejects(safeTarget(out, bad), { name: 'UnsafeOutputPathError' }, bad)
      // by its text alone (a task's fresh input directory, where no symlink can be)
      if (bad !== 'link/x.png')
        assert.throws(() => insideDir(out, bad), { name: 'UnsafeOutputPathError' }, bad)
    }
    assert.equal(insideDir(out, 'shot/a.blend'), join(out, 'shot', 'a.blend'))
    const b = blobs(['evil'])
    const r = await pullOutputs(b.access, [rec('link/x.png', b.hashes[0]!)], out)
    assert.equal(r.failed.length, 1)
    assert.deepEqual(b.fetched, [], 'nothing fetched for a path that is refused')
    assert.equal(await safeTarget(out, 'sub/frame_0001.png'), join(out, 'sub', 'frame_0001.png'))
  } finally {
    await dir.remove()
  }
})

test('a chunk of outputs comes home a few at once, reported in order', async () => {
  const dir = await tempDir('homes')
  try {
    const frames = Array.from({ length: 12 }, (_, i) => `frame ${i}`)
    const b = blobs(frames)
    let inFlight = 0
    let most = 0
    const access: BlobAccess = {
      ...b.access,
      fetch: async (hash, o) => {
        most = Math.max(most, ++inFlight)
        await new Promise((r) => setTimeout(r, 5))
        inFlight--
        await b.access.fetch(hash, o)
      },
    }
    const names = frames.map((_, i) => `frame_${String(i + 1).padStart(4, '0')}.png`)
    const out = join(dir.path, 'render')
    const r = await pullOutputs(
      access,
      names.map((n, i) => rec(n, b.hashes[i]!)),
      out,
    )
    assert.deepEqual(r.written, names)
    assert.equal(most, PULL_CONCURRENCY)
    for (const [i, n] of names.entries()) assert.equal(await readFile(join(out, n), 'utf8'), frames[i])
  } finally {
    await dir.remove()
  }
})

test('the outputs not home yet are asked of each maker in one request first, and written from memory', async () => {
  const dir = await tempDir('homes')
  try {
    const contents = ['f1', 'f2', 'f3', 'f4']
    const b = blobs(contents)
    const [h1, h2, h3, h4] = b.hashes as [string, string, string, string]
    const asked: [string, string[]][] = []
    const access: BlobAccess = {
      ...b.access,
      getSmall: async (list, o) => {
        asked.push([o.from, list.map((x) => x.hash)])
        return new Map(list.map((x) => [x.hash, Buffer.from(contents[b.hashes.indexOf(x.hash)]!)]))
      },
    }
    const out = join(dir.path, 'render')
    const known = new Map<string, string>()
    const recs = [
      rec('frame_0001.png', h1),
      { ...rec('frame_0002.png', h2), peer: 'pOther' },
      rec('sub/frame_0003.png', h3),
    ]
    const r = await pullOutputs(access, [...recs, rec('../x.png', h4)], out, { known })
    assert.deepEqual(asked, [
      ['pMaker', [h1, h3]],
      ['pOther', [h2]],
    ])
    assert.equal(r.written.length, 3)
    assert.equal(r.failed.length, 1, 'the unsafe path is refused, and nothing was asked for it')
    assert.deepEqual(b.fetched, [], 'nothing went through the store')
    assert.equal(await readFile(join(out, 'sub/frame_0003.png'), 'utf8'), 'f3', 'its directory made')
    const st = await lstat(join(out, 'frame_0001.png'))
    assert.equal(st.mode & 0o777, 0o644 & ~process.umask())
    assert.deepEqual(
      // written a few at once: remembered in the order their writes end
      b.homes.map(([hash, path]) => [hash, path]).sort((x, y) => (x[1]! < y[1]! ? -1 : 1)),
      [
        [h1, join(out, 'frame_0001.png')],
        [h2, join(out, 'frame_0002.png')],
        [h3, join(out, 'sub/frame_0003.png')],
      ],
      'each remembered as a home copy',
    )
    assert.deepEqual(
      (await readdir(out)).filter((n) => n.startsWith('.openfarm-')),
      [],
      'no temporary file left',
    )
    // the next change: only what is not home yet
    asked.length = 0
    await pullOutputs(access, [...recs, rec('frame_0004.png', h4)], out, { known })
    assert.deepEqual(asked, [['pMaker', [h4]]])
    // a maker that cannot answer that way: each output is fetched on its own all the same
    const failing: BlobAccess = { ...b.access, getSmall: async () => Promise.reject(new Error('no')) }
    const other = join(dir.path, 'other')
    assert.equal((await pullOutputs(failing, recs, other)).written.length, 3)
    assert.equal(b.fetched.length, 3)
  } finally {
    await dir.remove()
  }
})

test('an output written from memory keeps a different file there, and replaces it only when asked', async () => {
  const dir = await tempDir('homes')
  try {
    const contents = ['new bytes', 'same bytes']
    const b = blobs(contents)
    const [hNew, hSame] = b.hashes as [string, string]
    const access: BlobAccess = {
      ...b.access,
      getSmall: async (list) =>
        new Map(list.map((x) => [x.hash, Buffer.from(contents[b.hashes.indexOf(x.hash)]!)])),
    }
    const out = join(dir.path, 'render')
    await mkdir(out)
    await writeFile(join(out, 'a.png'), 'the user made this')
    await writeFile(join(out, 'b.png'), 'same bytes')
    const recs = [rec('a.png', hNew), rec('b.png', hSame)]
    const kept = await pullOutputs(access, recs, out)
    assert.deepEqual(kept.conflicts, ['a.png'])
    assert.deepEqual(kept.present, ['b.png'])
    assert.equal(await readFile(join(out, 'a.png'), 'utf8'), 'the user made this')
    const replaced = await pullOutputs(access, recs, out, { overwrite: true })
    assert.deepEqual(replaced.written, ['a.png'])
    assert.equal(await readFile(join(out, 'a.png'), 'utf8'), 'new bytes')
    assert.deepEqual(b.fetched, [])
  } finally {
    await dir.remove()
  }
})

test('many outputs are fetched ahead in windows, not all held in memory at once', async () => {
  const dir = await tempDir('homes')
  try {
    const n = 6
    const contents = Array.from({ length: n }, (_, i) => `frame ${i}`)
    const b = blobs(contents)
    const asked: number[] = []
    const access: BlobAccess = {
      ...b.access,
      getSmall: async (list) => {
        asked.push(list.length)
        return new Map(list.map((x) => [x.hash, Buffer.from(contents[b.hashes.indexOf(x.hash)]!)]))
      },
    }
    // each record says a third of the window: three to a window
    const size = Math.floor(PREFETCH_WINDOW_BYTES / 3)
    const recs = contents.map((_, i) => ({ ...rec(`f${i}.png`, b.hashes[i]!), size }))
    const r = await pullOutputs(access, recs, join(dir.path, 'render'))
    assert.equal(r.written.length, n)
    assert.deepEqual(asked, [3, 3])
  } finally {
    await dir.remove()
  }
})

describe('OutputHomes', () => {
  /** The first retry's wait here (HOME_RETRY_MS on a node). */
  const RETRY = 40
  const h = (s: string) => createHash('sha256').update(s).digest('hex')
  const record = (farm: FarmDoc, job: string, what: string) =>
    farm.recordOutput(job, { path: 'f1.png', hash: h(what), size: 1, frame: 1, task: 0, attempt: 0 })

  /** A farm of one peer with jobs jA and jB coming home, blobs as `fetch` says, and a clock to move. */
  async function homesWith(fetch: BlobAccess['fetch']) {
    const dir = await tempDir('homes')
    const farm = new FarmDoc(new Y.Doc(), { peer: 'pA' })
    farm.addJob(spec('jA', 4))
    farm.addJob(spec('jB', 4))
    const errors: string[] = []
    const log = Object.assign(() => {}, {
      error: (f: string, ...a: unknown[]) => errors.push(format(f.replaceAll('%d', '%s'), ...a)),
      trace: () => {},
      enabled: false,
      newScope: () => log,
    }) as unknown as Logger
    const access: BlobAccess = {
      fetch,
      copyOut: async (hash, dest) => {
        await mkdir(dirname(dest), { recursive: true })
        await writeFile(dest, hash, { flag: 'wx' })
      },
    }
    const homes = new OutputHomes({
      farm,
      blobs: access,
      file: join(dir.path, 'homes.json'),
      log,
      retryMs: RETRY,
    })
    await homes.start()
    await homes.track('jA', join(dir.path, 'a'))
    await homes.track('jB', join(dir.path, 'b'))
    return { dir, farm, homes, errors }
  }

  it('pulls each job on its own: one whose outputs cannot be fetched holds up no other', async () => {
    let release = () => {}
    const stuck = new Promise<void>((r) => {
      release = r
    })
    const { dir, farm, homes } = await homesWith(async (hash) => {
      if (hash !== h('A')) return
      await stuck // the maker is gone: the fetch searches until it gives up
      throw new Error('no holder found')
    })
    try {
      record(farm, 'jA', 'A')
      record(farm, 'jB', 'B')
      await waitFor(
        'job B home while A still searches',
        async () => (await readFile(join(dir.path, 'b', 'f1.png'), 'utf8').catch(() => '')) === h('B'),
      )
      release()
      await homes.idle()
      assert.deepEqual(
        homes.home('jA')?.report?.failed.map((f) => f.reason),
        ['no holder found'],
      )
    } finally {
      release()
      await homes.stop()
      await dir.remove()
    }
  })

  it('tries an output that did not come home again, less and less often, and a new record of it at once', async () => {
    const tries: number[] = []
    let holder = false
    const { dir, farm, homes, errors } = await homesWith(async (hash) => {
      if (hash !== h('A')) return
      tries.push(performance.now())
      if (!holder) throw new Error('no holder found')
    })
    try {
      record(farm, 'jA', 'A')
      await homes.idle()
      assert.equal(tries.length, 1)
      assert.equal(errors.length, 1, 'said once')
      assert.match(errors[0]!, /jA: f1\.png did not come home \(no holder found\); trying again in 40 ms/)
      // before its time: another change of the job's outputs does not try it
      farm.recordOutput('jA', { path: 'f2.png', hash: h('B'), size: 1, frame: 2, task: 0, attempt: 0 })
      await homes.idle()
      assert.equal(tries.length, 1)
      assert.deepEqual(homes.home('jA')?.report?.failed, [{ path: 'f1.png', reason: 'no holder found' }])
      // its time: tried again, then after twice as long
      await waitFor('two retries', () => tries.length >= 3)
      await homes.idle()
      assert.ok(tries[1]! - tries[0]! >= RETRY - 1, `first retry after ${tries[1]! - tries[0]!} ms`)
      assert.ok(tries[2]! - tries[1]! >= 2 * RETRY - 1, `second retry after ${tries[2]! - tries[1]!} ms`)
      assert.equal(errors.length, 1, 'the same failure is not said again')
      // another attempt's record of it: tried at once, and it comes home
      holder = true
      record(farm, 'jA', 'A2')
      await homes.idle()
      assert.equal(await readFile(join(dir.path, 'a', 'f1.png'), 'utf8'), h('A2'))
      assert.deepEqual(homes.home('jA')?.report?.failed, [])
    } finally {
      await homes.stop()
      await dir.remove()
    }
  })
})
