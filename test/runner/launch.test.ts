// The launcher (src/runner/launch.ts): a phase's process is started by a small process of ours, not
// forked from the node; a launcher that ends while its processes run takes them with it, with a reason
// that says so, and the next phase starts a new one; one that cannot start, is signalled, stopped,
// or outlives its node does not leave a phase hanging or a process running unseen.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { type OutputStream, runPhase } from '../../src/runner/execute.ts'
import { launcherPid, MARKER_VAR, reapMarked } from '../../src/runner/launch.ts'

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

describe('the launcher, when things go wrong', () => {
  const NODE = join(process.cwd(), 'node_modules/.bin/node')
  const CHILD = join(process.cwd(), 'test/runner/fixtures/phase-child.ts')
  const child = (...args: string[]) =>
    spawn(NODE, ['--import', 'tsx', CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  /** Runs the fixture to its end (exit 0) and reads the JSON line it prints. */
  const report = async (...args: string[]): Promise<unknown> => {
    const p = child(...args)
    let out = ''
    p.stdout.on('data', (d) => {
      out += d
    })
    let err = ''
    p.stderr.on('data', (d) => {
      err += d
    })
    const code = await new Promise((resolve) => p.once('exit', resolve))
    assert.equal(code, 0, err)
    return JSON.parse(out)
  }

  it("ignores the signals a shell sends the node's process group; the phase runs on", async () => {
    // a launcher that has loaded (one loading ignores them too, but its phase would wait for it)
    assert.equal((await run(['true']).done).ok, true)
    const r = run(['sh', '-c', 'sleep 0.5; echo done'])
    await sleep(150)
    const launcher = launcherPid()
    assert.ok(launcher !== undefined)
    for (const s of ['SIGTERM', 'SIGHUP', 'SIGINT', 'SIGQUIT'] as const) process.kill(launcher, s)
    const result = await r.done
    assert.equal(result.reason, null)
    assert.deepEqual(r.lines, [['stdout', 'done']])
    assert.equal(launcherPid(), launcher, 'the same launcher')
  })

  it('kills what it started when its node is killed with kill -9', async () => {
    const p = child('sleep')
    let out = ''
    p.stdout.on('data', (d) => {
      out += d
    })
    let pid = 0
    try {
      for (let i = 0; i < 500 && pid === 0; i++) {
        await sleep(20)
        pid = Number(/pid (\d+)/.exec(out)?.[1] ?? 0)
      }
      assert.ok(pid > 0, `the phase said its pid (${out})`)
      assert.equal(await alive(pid), true)
      p.kill('SIGKILL')
      for (let i = 0; i < 250 && (await alive(pid)); i++) await sleep(20)
      assert.equal(await alive(pid), false, 'the phase went with its node')
    } finally {
      p.kill('SIGKILL')
      if (pid > 0 && (await alive(pid))) process.kill(-pid, 'SIGKILL')
    }
  })

  it('that cannot start: phases start from the node, every one', async () => {
    const r = (await report('broken')) as {
      runs: { ok: boolean; reason: string; ppid: number }[]
      pid: number
      launcher: null
    }
    assert.deepEqual(
      r.runs,
      [
        { ok: true, reason: null, ppid: r.pid },
        { ok: true, reason: null, ppid: r.pid },
      ],
      'both phases ran, started by the node itself',
    )
    assert.equal(r.launcher, null)
  })

  it('stopped before it has loaded: the phase that times out never starts, and the next launcher is used', async () => {
    const cwd = await mkdtemp(join(dir, 'stopped-'))
    const r = (await report('stopped', cwd)) as {
      first: string
      started: boolean
      stopped: number | null
      next: { ok: boolean; ppid: number }
      launcher: number | null
    }
    assert.match(r.first, /^timed out after 0\.3 s before it started: the launcher did not answer$/)
    assert.equal(r.started, false, 'the phase given up on was not started elsewhere')
    assert.ok(r.stopped !== null && r.launcher !== null && r.launcher !== r.stopped, 'a new launcher')
    assert.deepEqual(r.next, { ok: true, ppid: r.launcher }, 'which started the next phase')
  })

  it('that does not answer: a phase that times out meanwhile ends, the launcher is replaced, the next phase runs', async () => {
    // a launcher that runs, then is stopped
    assert.equal((await run(['true']).done).ok, true)
    const stopped = launcherPid()
    assert.ok(stopped !== undefined)
    process.kill(stopped, 'SIGSTOP')
    const pidFile = join(dir, 'wedged.pid')
    const t0 = performance.now()
    const result = await runPhase(['sh', '-c', `echo "$$" > ${pidFile}; exec sleep 30`], {
      cwd: dir,
      signal: new AbortController().signal,
      onLine: () => {},
      timeoutMs: 300,
      killGraceMs: 300,
    })
    assert.ok(performance.now() - t0 < 5_000, 'it ended soon after its time limit')
    assert.match(
      result.reason ?? '',
      /^timed out after 0\.3 s before it started: the launcher did not answer$/,
    )
    for (let i = 0; i < 150 && (await alive(stopped)); i++) await sleep(20)
    assert.equal(await alive(stopped), false, 'the stopped launcher was killed')
    await assert.rejects(readFile(pidFile, 'utf8'), 'the process never started')

    const next = run(['sh', '-c', 'echo again'])
    assert.equal((await next.done).ok, true)
    assert.deepEqual(next.lines, [['stdout', 'again']])
    assert.notEqual(launcherPid(), stopped)
  })
})

describe('reapMarked', () => {
  it("kills the group of a process whose environment has the marker, and only that one's", async () => {
    const marker = `test-${process.pid}-${Date.now()}`
    const start = (value: string) =>
      spawn('sh', ['-c', 'sleep 30 & wait'], {
        detached: true,
        stdio: 'ignore',
        env: { ...process.env, [MARKER_VAR]: value },
      })
    const marked = start(marker)
    const other = start(`${marker}0`)
    try {
      await sleep(100)
      assert.equal(reapMarked(marker), 1)
      for (let i = 0; i < 100 && (await alive(marked.pid!)); i++) await sleep(20)
      assert.equal(await alive(marked.pid!), false, 'the marked one is killed')
      assert.equal(await alive(other.pid!), true, 'one whose marker only starts the same is not')
    } finally {
      process.kill(-other.pid!, 'SIGKILL')
    }
  })
})
