// removeTree: a task's work directory goes whole (nested directories, read-only files), a symlink
// in it is removed and never followed, a missing directory is no error; a tree larger than what is
// removed inline goes whole too.

import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { INLINE_ENTRIES, removeTree } from '../../src/node/rmtree.ts'
import { tempDir } from '../helpers.ts'

test('removes a work directory whole, without following a symlink out of it', async () => {
  const root = await tempDir('rmtree')
  try {
    const keep = join(root.path, 'keep')
    await mkdir(keep)
    await writeFile(join(keep, 'precious.txt'), 'still here')
    const dir = join(root.path, 'job', '0-0')
    for (const d of ['in/shot', 'in/deps/seq', 'out', 'tmp/blender_1', 'empty']) {
      await mkdir(join(dir, d), { recursive: true })
    }
    await writeFile(join(dir, 'in/shot/main.blend'), 'x')
    await chmod(join(dir, 'in/shot/main.blend'), 0o444) // inputs come out of the store read-only
    await writeFile(join(dir, 'in/deps/seq/seq_0001.png'), 'x')
    await writeFile(join(dir, 'out/frame_0001.png'), 'x')
    await writeFile(join(dir, 'remap.json'), '{}')
    await symlink(keep, join(dir, 'tmp', 'link-out'))
    await symlink(join(root.path, 'nowhere'), join(dir, 'dangling'))

    await removeTree(dir)
    assert.equal(existsSync(dir), false)
    assert.deepEqual(await readdir(join(root.path, 'job')), [])
    assert.equal(
      await readFile(join(keep, 'precious.txt'), 'utf8'),
      'still here',
      'the link was not followed',
    )
    await removeTree(dir) // gone already: no error
  } finally {
    await root.remove()
  }
})

test('a tree larger than what is removed inline goes whole too', async () => {
  const root = await tempDir('rmtree-big')
  try {
    const dir = join(root.path, 'job', '0-0')
    // the first directory fits, the second one overflows the budget half-way
    for (const d of ['a', 'b']) {
      await mkdir(join(dir, d), { recursive: true })
      for (let i = 0; i < INLINE_ENTRIES * 0.75; i++) await writeFile(join(dir, d, `f${i}`), 'x')
    }
    await removeTree(dir)
    assert.equal(existsSync(dir), false)
  } finally {
    await root.remove()
  }
})
