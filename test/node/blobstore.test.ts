// BlobStore on a real directory: add (bytes, streamed file), has/stat, read-only sharded files,
// copyOut, refs and gc with an injected clock, atomic writes, partial downloads (resume, corruption,
// bounds), corrupt blobs on disk, bad input.

import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { chmod, mkdir, readdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { BlobIndex } from '../../src/node/blobs/index-db.ts'
import { BlobStore } from '../../src/node/blobs/store.ts'
import { tempDir } from '../helpers.ts'

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

let root: { path: string; remove: () => Promise<void> }
let n = 0
const stores: BlobStore[] = []
before(async () => {
  root = await tempDir('blobstore')
})
after(async () => {
  await Promise.allSettled(stores.map((s) => s.close()))
  await root.remove()
})

async function fresh(opts: Parameters<typeof BlobStore.open>[1] = {}): Promise<BlobStore> {
  const s = await BlobStore.open(join(root.path, `s${n++}`), opts)
  stores.push(s)
  return s
}

/** No write bits (0444, less what the umask takes), and its owner can read it. */
const readOnly = (mode: number) => (mode & 0o222) === 0 && (mode & 0o400) !== 0

describe('BlobStore', () => {
  it('adds bytes and files under their sha256, read-only and sharded', async () => {
    const s = await fresh()
    const bytes = new TextEncoder().encode('hello blobs')
    const a = await s.addBytes(bytes)
    assert.equal(a.hash, sha(bytes))
    assert.equal(a.size, bytes.byteLength)
    assert.equal(await s.has(a.hash), true)
    assert.equal((await s.stat(a.hash))?.size, bytes.byteLength)
    assert.equal(s.pathOf(a.hash), join(s.dir, a.hash.slice(0, 2), a.hash))
    assert.ok(readOnly((await stat(s.pathOf(a.hash))).mode))
    // a shard directory removed behind the store's back is made again
    await rm(join(s.dir, a.hash.slice(0, 2)), { recursive: true, force: true })
    await s.addBytes(bytes)
    assert.deepEqual(new Uint8Array(await readFile(s.pathOf(a.hash))), bytes)

    const big = randomBytes(5 * 1024 * 1024 + 123)
    const src = join(root.path, 'big.bin')
    await writeFile(src, big)
    const b = await s.addFile(src)
    assert.deepEqual(b, { hash: sha(big), size: big.byteLength })
    assert.deepEqual(await readFile(s.pathOf(b.hash)), big)
    assert.ok(readOnly((await stat(s.pathOf(b.hash))).mode))
    // the same content again: same blob, nothing left in tmp/
    assert.deepEqual(await s.addFile(src), b)
    assert.deepEqual(await readdir(join(s.dir, 'tmp')), [])
    assert.equal(await s.has('0'.repeat(64)), false)
    assert.equal(await s.stat('0'.repeat(64)), null)
    const listed = []
    for await (const e of s.list()) listed.push(e.hash)
    assert.deepEqual(listed.sort(), [a.hash, b.hash].sort())
  })

  it('adopts a file of ours by a hard link, and copies what it cannot link', async () => {
    const s = await fresh({ maxBlobBytes: 200_000 })
    const bytes = randomBytes(100_000)
    const src = join(root.path, 'frame_0001.png')
    await writeFile(src, bytes)
    const a = await s.addFile(src, { adopt: true, job: 'j1' })
    assert.deepEqual(a, { hash: sha(bytes), size: bytes.byteLength })
    const [held, made] = await Promise.all([stat(s.pathOf(a.hash)), stat(src)])
    assert.equal(held.ino, made.ino, 'not the same file')
    assert.equal(held.nlink, 2)
    assert.ok(readOnly(held.mode))
    assert.deepEqual(await s.refsOf(a.hash), ['j1'])
    // the task's directory goes: the store keeps the bytes
    await rm(src)
    assert.deepEqual(await readFile(s.pathOf(a.hash)), bytes)
    assert.deepEqual(await readdir(join(s.dir, 'tmp')), [])
    // a symlink is not linked (that would take the link, not the file): its target is copied
    const target = join(root.path, 'target.bin')
    const other = randomBytes(1000)
    await writeFile(target, other)
    await symlink(target, join(root.path, 'sym.bin'))
    const b = await s.addFile(join(root.path, 'sym.bin'), { adopt: true })
    assert.equal(b.hash, sha(other))
    assert.notEqual((await stat(s.pathOf(b.hash))).ino, (await stat(target)).ino)
    // too large, missing, a directory: the errors of a copy
    const big = join(root.path, 'big-adopt.bin')
    await writeFile(big, new Uint8Array(200_001))
    await assert.rejects(s.addFile(big, { adopt: true }), { name: 'BlobTooLargeError' })
    await assert.rejects(s.addFile(join(root.path, 'missing'), { adopt: true }), { name: 'BlobSourceError' })
    await assert.rejects(s.addFile(root.path, { adopt: true }), { name: 'BlobSourceError' })
    assert.equal((await stat(big)).nlink, 1)
    assert.deepEqual(await readdir(join(s.dir, 'tmp')), [])
  })

  it('refuses bad input with named errors', async () => {
    const s = await fresh({ maxBlobBytes: 1000 })
    await assert.rejects(s.has('ABC'), { name: 'InvalidBlobHashError' })
    assert.throws(() => s.pathOf('../../etc/passwd'), { name: 'InvalidBlobHashError' })
    await assert.rejects(s.addBytes(new Uint8Array(1001)), { name: 'BlobTooLargeError' })
    const src = join(root.path, 'k.bin')
    await writeFile(src, new Uint8Array(1001))
    await assert.rejects(s.addFile(src), { name: 'BlobTooLargeError' })
    await assert.rejects(s.addFile(join(root.path, 'missing')), { name: 'BlobSourceError' })
    await assert.rejects(s.addFile(root.path), { name: 'BlobSourceError' })
    await assert.rejects(s.addBytes(new Uint8Array(1), { job: '' }), { name: 'InvalidJobIdError' })
    await assert.rejects(s.ref('a\u0000b', []), { name: 'InvalidJobIdError' })
    await assert.rejects(s.ref('j', ['nothex']), { name: 'InvalidBlobHashError' })
    await assert.rejects(s.openPartial('a'.repeat(64), 5000), { name: 'BlobTooLargeError' })
    await assert.rejects(BlobStore.open(join(root.path, 'neg'), { maxBlobBytes: -1 }), {
      name: 'BlobStoreError',
    })
    assert.deepEqual(await readdir(join(s.dir, 'tmp')), [])
  })

  it('copies out, and never overwrites a different file', async () => {
    const s = await fresh()
    const bytes = randomBytes(70_000)
    const { hash } = await s.addBytes(bytes)
    const dest = join(root.path, 'out', 'deep', 'scene.blend')
    await s.copyOut(hash, dest)
    assert.deepEqual(await readFile(dest), bytes)
    assert.equal((await stat(dest)).mode & 0o777, 0o644)
    await s.copyOut(hash, dest) // same content: fine
    const other = join(root.path, 'out', 'other.bin')
    await writeFile(other, 'something else')
    await assert.rejects(s.copyOut(hash, other), { name: 'DestinationExistsError' })
    assert.equal(await readFile(other, 'utf8'), 'something else')
    await assert.rejects(s.copyOut('f'.repeat(64), join(root.path, 'x')), { name: 'BlobNotFoundError' })
    assert.deepEqual(
      (await readdir(join(root.path, 'out', 'deep'))).filter((f) => f !== 'scene.blend'),
      [],
      'no temp file left beside dest',
    )
  })

  it('copies straight to the name into a fresh directory, still never over a file', async () => {
    const s = await fresh()
    const bytes = randomBytes(9_000)
    const { hash } = await s.addBytes(bytes)
    const dir = join(root.path, 'fresh-in')
    await s.copyOut(hash, join(dir, 'shot', 'main.blend'), { fresh: true })
    assert.deepEqual(await readFile(join(dir, 'shot', 'main.blend')), bytes)
    assert.equal((await stat(join(dir, 'shot', 'main.blend'))).mode & 0o777, 0o644)
    assert.deepEqual(await readdir(join(dir, 'shot')), ['main.blend'], 'no temporary name used')
    await writeFile(join(dir, 'taken.bin'), 'something else')
    await assert.rejects(s.copyOut(hash, join(dir, 'taken.bin'), { fresh: true }), {
      name: 'DestinationExistsError',
    })
    assert.equal(await readFile(join(dir, 'taken.bin'), 'utf8'), 'something else')
    // a bad blob caught by verify leaves nothing under the name
    const bad = await s.addBytes(randomBytes(3_000))
    await chmod(s.pathOf(bad.hash), 0o644)
    await writeFile(s.pathOf(bad.hash), 'rot')
    await assert.rejects(s.copyOut(bad.hash, join(dir, 'bad.png'), { fresh: true, verify: true }), {
      name: 'BlobHashMismatchError',
    })
    await assert.rejects(stat(join(dir, 'bad.png')), { code: 'ENOENT' })
  })

  it('copies out over a file only when asked to replace, and can verify the copy before it lands', async () => {
    const s = await fresh()
    const bytes = randomBytes(5_000)
    const { hash } = await s.addBytes(bytes)
    const dir = join(root.path, 'replace')
    const dest = join(dir, 'frame_0001.png')
    await mkdir(dir, { recursive: true })
    await writeFile(dest, 'an older render')
    await s.copyOut(hash, dest, { replace: true, verify: true })
    assert.deepEqual(await readFile(dest), bytes)
    // a blob whose file in the store went bad is caught by verify, and nothing lands
    const bad = await s.addBytes(randomBytes(5_000))
    const path = s.pathOf(bad.hash)
    await chmod(path, 0o644)
    await writeFile(path, 'rot')
    const dest2 = join(dir, 'frame_0002.png')
    await assert.rejects(s.copyOut(bad.hash, dest2, { verify: true }), { name: 'BlobHashMismatchError' })
    assert.deepEqual((await readdir(dir)).sort(), ['frame_0001.png'], 'nothing left of the failed copy')
    // a name as long as the filesystem allows: the temporary name beside it must not be longer
    const long = join(dir, `${'f'.repeat(251)}.png`)
    await s.copyOut(hash, long, { verify: true })
    assert.deepEqual(await readFile(long), bytes)
  })

  it('keeps blobs live jobs need and collects the rest after the grace period', async () => {
    let now = 1_000_000
    const s = await fresh({ gcGraceMs: 60_000, now: () => now })
    const live = await s.addBytes(new TextEncoder().encode('live'), { job: 'job-live' })
    const dead = await s.addBytes(new TextEncoder().encode('dead'), { job: 'job-dead' })
    const shared = await s.addBytes(new TextEncoder().encode('shared'), { job: 'job-dead' })
    await s.ref('job-live', [shared.hash])
    const old = await s.addBytes(new TextEncoder().encode('old, unreferenced'))
    now += 120_000
    const young = await s.addBytes(new TextEncoder().encode('young, unreferenced'))
    // a submit in progress: its job is not live yet, its blob is young
    const submitting = await s.addBytes(new TextEncoder().encode('submitting'), { job: 'job-new' })
    assert.deepEqual((await s.refsOf(shared.hash)).sort(), ['job-dead', 'job-live'])

    const r = await s.gc(new Set(['job-live']))
    assert.deepEqual(r, { removed: 2, bytes: 4 + 'old, unreferenced'.length })
    assert.equal(await s.has(live.hash), true)
    assert.equal(await s.has(shared.hash), true)
    assert.equal(await s.has(young.hash), true, 'inside the grace period')
    assert.equal(await s.has(submitting.hash), true, 'inside the grace period, though its job is not live')
    assert.equal(await s.has(dead.hash), false)
    assert.equal(await s.has(old.hash), false)
    await assert.rejects(stat(s.pathOf(dead.hash)), { code: 'ENOENT' })
    assert.deepEqual(await s.refsOf(shared.hash), ['job-live'], 'refs of dead jobs dropped')

    await s.unrefJob('job-live')
    assert.deepEqual(await s.refsOf(live.hash), [])
    now += 120_000
    assert.deepEqual(await s.gc(new Set(['job-live'])), { removed: 4, bytes: 4 + 6 + 19 + 10 })
    const left = []
    for await (const e of s.list()) left.push(e.hash)
    assert.deepEqual(left, [])
  })

  it('keeps its index across a restart and clears leftovers of a crash', async () => {
    const dir = join(root.path, 'restart')
    const s1 = await BlobStore.open(dir)
    const { hash } = await s1.addBytes(new TextEncoder().encode('persisted'), { job: 'j1' })
    await s1.close()
    await writeFile(join(dir, 'tmp', 'deadbeef.tmp'), 'half a file')
    const s2 = await BlobStore.open(dir)
    stores.push(s2)
    assert.equal(await s2.has(hash), true)
    assert.deepEqual(await s2.refsOf(hash), ['j1'])
    assert.deepEqual(await readdir(join(dir, 'tmp')), [])
    await assert.rejects(BlobStore.open(dir), { name: 'BlobStoreError' }, 'one process per store')
    await assert.rejects(s1.has(hash), { name: 'BlobStoreError' }, 'closed')
  })

  it('resumes a partial download and installs it only if the hash matches', async () => {
    const s = await fresh()
    const bytes = randomBytes(3 * 1024 * 1024 + 7)
    const hash = sha(bytes)
    const p1 = await s.openPartial(hash, bytes.byteLength)
    assert.equal(p1.resumedFrom, 0)
    await assert.rejects(s.openPartial(hash, bytes.byteLength), { name: 'BlobBusyError' })
    await p1.write(bytes.subarray(0, 1_500_000))
    await p1.close()
    assert.equal(await s.partialLength(hash), 1_500_000)
    assert.equal(await s.has(hash), false)

    const p2 = await s.openPartial(hash, bytes.byteLength)
    assert.equal(p2.resumedFrom, 1_500_000)
    assert.equal(p2.length, 1_500_000)
    await assert.rejects(p2.write(new Uint8Array(bytes.byteLength)), { name: 'BlobTooLargeError' })
    for (let off = 1_500_000; off < bytes.byteLength; off += 100_000) {
      await p2.write(bytes.subarray(off, Math.min(off + 100_000, bytes.byteLength)))
    }
    await p2.finish('job-x')
    assert.equal(await s.has(hash), true)
    assert.deepEqual(await s.refsOf(hash), ['job-x'])
    assert.deepEqual(await readFile(s.pathOf(hash)), bytes)
    assert.ok(readOnly((await stat(s.pathOf(hash))).mode))
    assert.equal(await s.partialLength(hash), 0)
  })

  it('detects a corrupt .part and a short one', async () => {
    const s = await fresh()
    const bytes = randomBytes(200_000)
    const hash = sha(bytes)
    const p1 = await s.openPartial(hash, bytes.byteLength)
    await p1.write(bytes.subarray(0, 100_000))
    await p1.close()
    // flip one byte of what is on disk, then resume with good bytes
    const part = s.partialPathOf(hash)
    const onDisk = await readFile(part)
    onDisk[50_000] = (onDisk[50_000]! + 1) & 0xff
    await writeFile(part, onDisk)
    const p2 = await s.openPartial(hash, bytes.byteLength)
    await p2.write(bytes.subarray(100_000))
    await assert.rejects(p2.finish(), { name: 'BlobHashMismatchError' })
    assert.equal(await s.has(hash), false)
    assert.equal(await s.partialLength(hash), 0, 'a mismatching .part is deleted')

    const p3 = await s.openPartial(hash, bytes.byteLength)
    await p3.write(bytes.subarray(0, 10))
    await assert.rejects(p3.finish(), { name: 'BlobIncompleteError' })
    assert.equal(await s.partialLength(hash), 10, 'kept for a resume')
    // a .part longer than the announced size cannot be a prefix: it starts over
    const p4 = await s.openPartial(hash, 5)
    assert.equal(p4.length, 0)
    await p4.discard()
    assert.equal(await s.partialLength(hash), 0)
  })

  it('frees a download whose last write the disk refused, for the next fetch to resume', async (t) => {
    if ((await stat('/dev/full').catch(() => null)) === null) {
      t.skip('SKIPPED: no /dev/full on this machine to stand for a full disk')
      return
    }
    const s = await fresh()
    const bytes = randomBytes(1000)
    const hash = sha(bytes)
    // the .part is /dev/full: every write to it fails with ENOSPC, as on a full disk
    await symlink('/dev/full', s.partialPathOf(hash))
    const p1 = await s.openPartial(hash, bytes.byteLength)
    await p1.write(bytes)
    await assert.rejects(p1.finish(), { code: 'ENOSPC' })
    assert.equal(p1.state, 'closed')
    assert.equal(s.partialOf(hash), undefined, 'no longer being downloaded')
    // space again: the next fetch opens it and installs the blob
    await rm(s.partialPathOf(hash))
    const p2 = await s.openPartial(hash, bytes.byteLength)
    await p2.write(bytes)
    await p2.finish()
    assert.deepEqual(await readFile(s.pathOf(hash)), bytes)
  })

  it('holds small downloads open without megabytes of buffers each', async () => {
    // a frame of a few kB once cost 3 MB of external memory per fetch, whose churn made V8 run a full
    // mark-compact every few fetches (bench:render)
    const s = await fresh()
    const blobs = Array.from({ length: 64 }, () => randomBytes(2_000))
    const before = process.memoryUsage().arrayBuffers
    const open = await Promise.all(blobs.map((b) => s.openPartial(sha(b), b.byteLength)))
    const grown = process.memoryUsage().arrayBuffers - before
    assert.ok(grown < 4 * 1024 * 1024, `64 open downloads of 2 kB hold ${grown} bytes of buffers`)
    for (const [i, p] of open.entries()) {
      await p.write(blobs[i]!)
      await p.finish()
    }
    for (const b of blobs) assert.deepEqual(await readFile(s.pathOf(sha(b))), b)
  })

  it('drops a blob whose file was corrupted on disk when verified', async () => {
    const s = await fresh()
    const { hash } = await s.addBytes(randomBytes(10_000))
    assert.equal(await s.verify(hash), true)
    const path = s.pathOf(hash)
    await chmod(path, 0o644)
    await writeFile(path, randomBytes(10_000))
    assert.equal(await s.verify(hash), false)
    assert.equal(await s.has(hash), false)
    await assert.rejects(stat(path), { code: 'ENOENT' })
  })

  it('forgets a blob whose file is gone when it copies it out, so the next fetch gets it again', async () => {
    // a file deleted by hand, or a power cut that kept the index entry but not the rename
    const s = await fresh()
    const bytes = randomBytes(5_000)
    const { hash } = await s.addBytes(bytes)
    await rm(s.pathOf(hash))
    await assert.rejects(s.copyOut(hash, join(root.path, 'gone', 'a.png')), { name: 'BlobNotFoundError' })
    assert.equal(await s.has(hash), false)
    await s.addBytes(bytes)
    await s.copyOut(hash, join(root.path, 'gone', 'a.png'))
    assert.deepEqual(await readFile(join(root.path, 'gone', 'a.png')), bytes)
  })

  it('takes a blob back in from its home copy, hashed, and forgets a copy that changed', async () => {
    const s = await fresh()
    const bytes = randomBytes(6_000)
    const { hash } = await s.addBytes(bytes)
    const home = join(root.path, 'home', 'frame_0001.png')
    await s.copyOut(hash, home)
    await s.keepHome(hash, home)
    await s.drop(hash) // gc took the store's own copy
    assert.equal(await s.has(hash), false)
    assert.equal((await s.homeOf(hash))?.size, 6_000)
    // over a bound (get-many's): left where it is
    assert.equal(await s.restore(hash, { maxBytes: 5_999 }), false)
    assert.equal(await s.has(hash), false)
    assert.equal(await s.restore(hash), true)
    assert.deepEqual(await readFile(s.pathOf(hash)), bytes)

    // the user re-saved the frame: its copy is no longer the blob's
    await s.drop(hash)
    await chmod(home, 0o644)
    await writeFile(home, randomBytes(6_000))
    assert.equal(await s.homeOf(hash), null)
    assert.equal(await s.restore(hash), false)
    assert.equal(await s.has(hash), false)

    // same size and time but other bytes (touched back): restore hashes it and refuses it
    const other = randomBytes(6_000)
    const { hash: h2 } = await s.addBytes(other)
    const home2 = join(root.path, 'home', 'frame_0002.png')
    await s.copyOut(h2, home2)
    await s.keepHome(h2, home2)
    await s.drop(h2)
    const st = await stat(home2)
    await chmod(home2, 0o644)
    await writeFile(home2, randomBytes(6_000))
    await utimes(home2, st.atime, st.mtime)
    assert.equal(await s.restore(h2), false)
    assert.equal(await s.has(h2), false)
    assert.equal(await s.homeOf(h2), null, 'forgotten')
  })

  it('forgets home copies that changed or went when it collects garbage', async () => {
    const s = await fresh()
    const kept = await s.addBytes(randomBytes(100))
    const gone = await s.addBytes(randomBytes(100))
    for (const [name, b] of [
      ['kept.png', kept],
      ['gone.png', gone],
    ] as const) {
      await s.copyOut(b.hash, join(root.path, 'gchome', name))
      await s.keepHome(b.hash, join(root.path, 'gchome', name))
    }
    await rm(join(root.path, 'gchome', 'gone.png'))
    await s.gc(new Set())
    await s.close()
    // what the index keeps (homeOf would forget the vanished one by itself)
    const index = await BlobIndex.open(join(s.dir, 'index'))
    const left: string[] = []
    for await (const [hash] of index.homes()) left.push(hash)
    await index.close()
    assert.deepEqual(left, [kept.hash])
  })

  it('answers has/stat from what it last read or wrote, never from before a write', async () => {
    const s = await fresh()
    const bytes = new TextEncoder().encode('cached')
    const hash = sha(bytes)
    for (let i = 0; i < 20; i++) {
      // a read racing the write that adds the blob, then one racing the drop
      const [before] = await Promise.all([s.has(hash), s.addBytes(bytes)])
      assert.equal(typeof before, 'boolean')
      assert.equal(await s.has(hash), true, `after the add (${i})`)
      assert.equal((await s.stat(hash))?.size, bytes.byteLength)
      await Promise.all([s.has(hash), s.drop(hash)])
      assert.equal(await s.has(hash), false, `after the drop (${i})`)
    }
    // what a restart reads from disk agrees with what the running store answered
    await s.addBytes(bytes)
    await s.close()
    const again = await BlobStore.open(s.dir)
    stores.push(again)
    assert.equal(await again.has(hash), true)
  })

  it('sweeps stale partials that nobody has open', async () => {
    let now = Date.now()
    const s = await fresh({ gcGraceMs: 1000, now: () => now })
    const stale = 'a'.repeat(64)
    const open = 'b'.repeat(64)
    const p = await s.openPartial(stale, 100)
    await p.write(new Uint8Array(10))
    await p.close()
    const q = await s.openPartial(open, 100)
    await q.write(new Uint8Array(10))
    await q.flush()
    const old = new Date(now - 10_000)
    await utimes(s.partialPathOf(stale), old, old)
    await utimes(s.partialPathOf(open), old, old)
    now += 1
    await s.gc(new Set())
    assert.equal(await s.partialLength(stale), 0)
    assert.equal(await s.partialLength(open), 10, 'open partial kept')
    await q.discard()
  })
})
