// The launcher (src/runner/launch.ts): a phase's process is started by a small process of ours, not
// forked from the node; a launcher that ends while its processes run takes them with it, with a reason
// that says so, and the next phase starts a new one.

import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { type OutputStream, runPhase } from '../../src/runner/execute.ts'
import { launcherPid } from '../../src/runner/launch.ts'

let dir: string
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'openfarm-launch-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

function run(argv: string[], signal = new AbortController().signal) {
  const lines: [OutputStream, string][] = []
  const done = runPhase(argv, { cwd: dir, signal, onLine: (stream, line) => lines.push([stream, line]) })
  return { lines, done }
}

/** Field `i` (0-based, after the command name) of /proc/PID/stat; undefined once it is gone. */
async function statField(pid: number, i: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[i]
}
const alive = async (pid: number) => {
  const state = await statField(pid, 0)
  return state !== undefined && state !== 'Z'
}
const rssMb = async (pid: number) => (Number(await statField(pid, 21)) * 4096) / 2 ** 20

describe('the launcher', () => {
  it("starts a phase's process, which is its child and not this process's; it is small", async () => {
    const r = run(['sh', '-c', 'echo "$PPID"'])
    assert.equal((await r.done).ok, true)
    const launcher = launcherPid()
    assert.ok(launcher !== undefined, 'a launcher runs')
    assert.notEqual(launcher, process.pid)
    assert.deepEqual(r.lines, [['stdout', String(launcher)]], 'the launcher is the parent')
    assert.equal(Number(await statField(launcher, 1)), process.pid, "and it is this process's child")
    const mb = await rssMb(launcher)
    assert.ok(mb < 120, `the launcher takes ${mb.toFixed(0)} MB`)
  })

  it('that ends while its process runs: the phase fails saying so, the process is killed, and the next phase runs', async () => {
    const r = run(['sh', '-c', 'echo "$$"; exec sleep 30'])
    let pid = 0
    for (let i = 0; i < 150 && pid === 0; i++) {
      await sleep(20)
      pid = Number(r.lines[0]?.[1] ?? 0)
    }
    assert.ok(pid > 0, 'the process said its pid')
    const launcher = launcherPid()
    assert.ok(launcher !== undefined)
    process.kill(launcher, 'SIGKILL')
    const result = await r.done
    assert.equal(result.ok, false)
    assert.match(result.reason ?? '', /^sh: the launcher ended while the process ran$/)
    for (let i = 0; i < 150 && (await alive(pid)); i++) await sleep(20)
    assert.equal(await alive(pid), false, 'the process went with its launcher')

    const next = run(['sh', '-c', 'echo again'])
    assert.equal((await next.done).ok, true)
    assert.deepEqual(next.lines, [['stdout', 'again']])
    assert.notEqual(launcherPid(), launcher, 'a new launcher')
  })

  it('a phase cancelled while its process is being started is cancelled', async () => {
    const ac = new AbortController()
    const r = run(['sleep', '30'], ac.signal)
    ac.abort()
    const result = await r.done
    assert.equal(result.reason, 'cancelled')
    assert.ok(result.durationMs < 10_000)
  })
})
