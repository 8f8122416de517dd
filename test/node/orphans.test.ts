// A node killed with -9 leaves its task's process group running; the next start kills it, and only
// groups that provably belong to that attempt (their TMPDIR), never a stranger that reused the pid.
// It may also leave tasks it had only got ready (staged); the next start removes those.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { logger } from '@libp2p/logger'
import { reapOrphans, recordGroup, STAGED_FILE } from '../../src/node/orphans.ts'
import { tempDir, waitFor } from '../helpers.ts'

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

test('a group left by a previous run is killed at start; a process that is not ours is left alone', async () => {
  const dir = await tempDir('orphans')
  const work = join(dir.path, 'work')
  const ours = join(work, 'j1', '0-0')
  const stranger = join(work, 'j1', '1-0')
  await mkdir(join(ours, 'tmp'), { recursive: true })
  await mkdir(join(stranger, 'tmp'), { recursive: true })
  const start = (tmp: string) => {
    const p = spawn('sleep', ['60'], {
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, TMPDIR: tmp },
    })
    p.unref()
    return p.pid!
  }
  const orphan = start(join(ours, 'tmp'))
  const other = start(join(dir.path, 'somewhere-else'))
  try {
    recordGroup(ours, orphan)
    recordGroup(stranger, other) // a pid file that names a process of another attempt
    assert.deepEqual(await reapOrphans(work, logger('test')), { killed: 1, unstaged: 0 })
    await waitFor('the orphan gone', () => !alive(orphan) || isZombie(orphan))
    assert.ok(alive(other), 'a process with another TMPDIR is not killed')
    assert.deepEqual(
      await reapOrphans(work, logger('test')),
      { killed: 0, unstaged: 0 },
      'pid files are forgotten once looked at',
    )
  } finally {
    for (const pid of [orphan, other]) {
      try {
        process.kill(-pid, 'SIGKILL')
      } catch {}
    }
    await dir.remove()
  }
})

test("a task only staged by a previous run is removed at start; a run's directory is kept", async () => {
  const dir = await tempDir('orphans')
  const work = join(dir.path, 'work')
  const staged = join(work, 'j1', '2-0')
  const failed = join(work, 'j1', '1-0') // a run that failed or was cut off: kept for inspection
  const gone = join(work, 'j2', '0-0') // the one attempt of j2, only staged
  try {
    for (const d of [staged, failed, gone]) await mkdir(join(d, 'in'), { recursive: true })
    for (const d of [staged, gone]) await writeFile(join(d, STAGED_FILE), '')
    await writeFile(join(failed, 'in', 'scene.blend'), 'x')
    assert.deepEqual(await reapOrphans(work, logger('test')), { killed: 0, unstaged: 2 })
    assert.equal(existsSync(staged), false)
    assert.equal(existsSync(failed), true)
    assert.equal(existsSync(join(work, 'j2')), false, "a job's directory left empty goes too")
  } finally {
    await dir.remove()
  }
})

// a killed child of this test process stays a zombie until reaped; it no longer runs
function isZombie(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] === 'Z'
  } catch {
    return true
  }
}
