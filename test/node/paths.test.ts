// makeDirs: mkdir -p that names what it could not make, where Node's own recursive mkdir spins.

import assert from 'node:assert/strict'
import { stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { makeDirs } from '../../src/node/paths.ts'
import { tempDir } from '../helpers.ts'

describe('makeDirs', () => {
  it('makes every missing directory, and is content with ones already there', async () => {
    const dir = await tempDir('mkdirs')
    try {
      const deep = join(dir.path, 'a', 'b', 'c')
      // two at once into one new tree (two pulls of one job): both succeed
      await Promise.all([makeDirs(deep), makeDirs(join(dir.path, 'a', 'b', 'd'))])
      assert.ok((await stat(deep)).isDirectory())
      await makeDirs(deep)
      await makeDirs(dir.path)
    } finally {
      await dir.remove()
    }
  })

  it('names the file in the way', async () => {
    const dir = await tempDir('mkdirs')
    try {
      await writeFile(join(dir.path, 'f'), 'x')
      await assert.rejects(makeDirs(join(dir.path, 'f', 'g')), {
        name: 'DirectoryError',
        message: `cannot make ${join(dir.path, 'f', 'g')}: ${join(dir.path, 'f')} is not a directory`,
      })
    } finally {
      await dir.remove()
    }
  })

  it('gives up under /proc, where a directory refuses children with ENOENT', async () => {
    await assert.rejects(makeDirs('/proc/openfarm-test/render'), {
      name: 'DirectoryError',
      message: 'cannot make /proc/openfarm-test: ENOENT',
    })
  })
})
