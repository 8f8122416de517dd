// The farm as a user runs it: `openfarm join` processes on loopback, driven by the CLI.
// A node is killed with SIGKILL and restarted from its data directory: it comes back from disk and
// catches up with what it missed; a task it was running is requeued by a peer and finished there.

import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { FarmKey } from '../../src/node/farmkey.ts'
import { NO_RENDER_APPS, tempDir, waitFor } from '../helpers.ts'

const NODE = join(process.cwd(), 'node_modules/.bin/node')
const CLI = join(process.cwd(), 'bin/openfarm')
const run = promisify(execFile)

async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

/** Runs the CLI; resolves with exit code, stdout and stderr (never throws on exit codes). */
async function cli(
  data: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(NODE, [CLI, ...args, '--data', data], { timeout: 30_000 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

async function json<T>(data: string, ...args: string[]): Promise<T> {
  const r = await cli(data, ...args, '--json')
  assert.equal(r.code, 0, r.stderr)
  return JSON.parse(r.stdout) as T
}

interface Peer {
  name: string
  data: string
  port: number
  proc?: ChildProcess
  peerId?: string
}

async function join_(p: Peer, key: FarmKey, bootstrap: string[]): Promise<void> {
  const args = [
    CLI,
    'join',
    '--data',
    p.data,
    '--key',
    key.hex,
    '--name',
    p.name,
    '--no-mdns',
    ...NO_RENDER_APPS,
  ]
  // equal configured speeds: the auction would rightly give both tasks of a pair to a host twice as fast
  args.push('--listen', `/ip4/127.0.0.1/tcp/${p.port}`, '--dead-after', '3', '--speed', '1')
  for (const b of bootstrap) args.push('--bootstrap', b)
  const proc = spawn(NODE, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout.on('data', (d) => {
    out += d
  })
  proc.stderr.on('data', (d) => {
    out += d
  })
  p.proc = proc
  await waitFor(`${p.name} to join (${out})`, () => out.includes('local API'), { timeoutMs: 30_000 })
  p.peerId = (JSON.parse(await readFile(join(p.data, 'api.json'), 'utf8')) as { peerId: string }).peerId
}

const addr = (p: Peer) => `/ip4/127.0.0.1/tcp/${p.port}/p2p/${p.peerId}`

interface Job {
  id: string
  state: string
  priority: number
  tasks: { state: string; owner: string | null; attempt: number }[]
}

describe('openfarm join processes', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const key = FarmKey.generate()
  let a: Peer
  let b: Peer

  before(async () => {
    dir = await tempDir('procs')
    a = { name: 'alpha', data: join(dir.path, 'a'), port: await freePort() }
    b = { name: 'beta', data: join(dir.path, 'b'), port: await freePort() }
    await join_(a, key, [])
    await join_(b, key, [addr(a)])
  })

  after(async () => {
    for (const p of [a, b]) p?.proc?.kill('SIGKILL')
    await dir.remove()
  })

  it('submit on one peer, read on the other, human tables and --json', async () => {
    const sub = await json<{ id: string }>(
      b.data,
      'submit',
      'echo',
      '--frames',
      '1-4',
      '--chunk',
      '2',
      '--set',
      'text=hi',
    )
    const job = await waitFor('job DONE on alpha', async () => {
      const j = await json<Job>(a.data, 'status', sub.id)
      return j.state === 'DONE' ? j : undefined
    })
    assert.equal(job.tasks.length, 2)
    // a reader that left (`logs ... | head`) ends the command quietly, as it ends `cat`
    const left = spawn(NODE, [CLI, 'logs', `${sub.id}/0`, '--data', a.data], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    left.stdout.destroy()
    let stderr = ''
    left.stderr.on('data', (d) => {
      stderr += d
    })
    const code = await new Promise((resolve) => left.on('exit', resolve))
    assert.equal(code, 0, stderr)
    assert.doesNotMatch(stderr, /EPIPE/)
    const jobs = await cli(a.data, 'jobs')
    assert.match(jobs.stdout, new RegExp(`${sub.id}\\s+DONE`))
    const hosts = await waitFor('both hosts listed', async () => {
      const h = await json<{ name: string; liveness: string }[]>(a.data, 'hosts')
      return h.length === 2 && h.every((x) => x.liveness === 'alive') ? h : undefined
    })
    assert.deepEqual(hosts.map((h) => h.name).sort(), ['alpha', 'beta'])
    assert.match((await cli(b.data, 'hosts')).stdout, /alpha.*alive/)
    // a prefix of the id is enough
    assert.match((await cli(b.data, 'status', sub.id.slice(0, 6))).stdout, /state DONE/)
    // removed on one peer: gone from every peer's list, and said so
    assert.match((await cli(a.data, 'rm', sub.id.slice(0, 6))).stdout, new RegExp(`${sub.id}: removed`))
    await waitFor('the job gone from beta', async () => !(await cli(b.data, 'jobs')).stdout.includes(sub.id))
    const gone = await cli(b.data, 'status', sub.id)
    assert.equal(gone.code, 1)
    assert.equal(gone.stderr.trim(), `openfarm: job ${sub.id} was removed`)
  })

  it('errors are one clear line, without a stack trace', async () => {
    const unknown = await cli(a.data, 'status', 'jnosuchjob')
    assert.equal(unknown.code, 1)
    assert.equal(unknown.stderr.trim(), 'openfarm: no job "jnosuchjob" in this farm')
    const badFrames = await cli(a.data, 'submit', 'echo', '--frames', '9-1')
    assert.equal(badFrames.code, 1)
    assert.match(badFrames.stderr, /^openfarm: .*frame/m)
    assert.doesNotMatch(badFrames.stderr, /\bat .*\.ts:\d+/)
    const notRunning = await cli(join(dir.path, 'nobody'), 'jobs')
    assert.equal(notRunning.code, 1)
    assert.match(notRunning.stderr, /no node is running with data directory .*openfarm join/)
    const fresh = join(dir.path, 'fresh')
    assert.match(
      (await cli(fresh, 'init')).stdout,
      new RegExp(`start this machine: +openfarm join --data ${fresh}$`, 'm'),
    )
    const badKey = await cli(join(dir.path, 'x'), 'join', '--key', 'not-a-key')
    assert.match(badKey.stderr, /a farm key is 64 hex characters/)
    // options Node's parser refuses: a usage error (exit 2) that says how to write it
    for (const [args, says] of [
      [['jobs', '--bogus'], /Unknown option '--bogus'/],
      [['submit', 'echo', '--chunk', '-2'], /use '--chunk=-XYZ'/],
      [['priority', 'jabc', '-5'], /Unknown option '-5'.*'--'/],
      [['license', 'redshift', 'abc'], /^openfarm: SEATS must be a whole number, not "abc"$/m],
    ] as const) {
      const r = await cli(a.data, ...args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, says)
      assert.doesNotMatch(r.stderr, /\bat .*:\d+/, 'no stack trace')
    }
    // a frames home that cannot be made is refused at submit (Node's own mkdir -p spins on /proc)
    const before = (await json<unknown[]>(a.data, 'jobs')).length
    const proc = await cli(a.data, 'submit', 'echo', '--frames', '1', '--out', '/proc/openfarm-x/render')
    assert.equal(proc.code, 1)
    assert.match(proc.stderr, /^openfarm: out: cannot make \/proc\/openfarm-x: ENOENT$/m)
    assert.equal((await json<unknown[]>(a.data, 'jobs')).length, before, 'no job added')
    // a job no host can run waits in QUEUE, and says why, at submit and in status
    const pinned = await cli(b.data, 'submit', 'echo', '--frames', '1', '--app-version', '9.9')
    assert.equal(pinned.code, 0, pinned.stderr)
    const why = /^no host can run it now: it needs echo 9\.9; the hosts have echo .+$/m
    assert.match(pinned.stdout, why)
    const id = /^submitted (\S+):/.exec(pinned.stdout)![1]!
    assert.match((await cli(a.data, 'status', id)).stdout, why)
    assert.equal((await cli(a.data, 'rm', id)).code, 0)
  })

  it('a node killed with SIGKILL comes back from disk and catches up; its running task is finished by a peer', async () => {
    const first = await json<{ id: string }>(a.data, 'submit', 'echo', '--frames', '1-2', '--name', 'before')
    await waitFor(
      'first job on beta',
      async () => (await json<Job>(b.data, 'status', first.id)).state === 'DONE',
    )
    // two long tasks: one runs on each host
    const slow = await json<{ id: string }>(
      a.data,
      'submit',
      'sleep',
      '--frames',
      '1-2',
      '--set',
      'seconds=4',
    )
    await waitFor('beta runs a slow task', async () => {
      const j = await json<Job>(a.data, 'status', slow.id)
      return j.tasks.some((t) => t.state === 'RUN' && t.owner === b.peerId)
    })
    b.proc!.kill('SIGKILL')
    await new Promise((r) => b.proc!.once('exit', r))
    // while beta is down: a new job and a priority change
    const missed = await json<{ id: string }>(a.data, 'submit', 'echo', '--frames', '1-2', '--name', 'missed')
    await cli(a.data, 'priority', first.id, '5')
    // alpha notices beta is dead and finishes its task in a new attempt
    const done = await waitFor(
      'slow job DONE on alpha alone',
      async () => {
        const j = await json<Job>(a.data, 'status', slow.id)
        return j.state === 'DONE' ? j : undefined
      },
      { timeoutMs: 30_000 },
    )
    assert.ok(
      done.tasks.some((t) => t.attempt === 1 && t.owner === a.peerId),
      'the dead host’s task was requeued',
    )
    // restart beta from its data directory, with no bootstrap: what it had comes from disk
    await join_(b, key, [])
    const info = await json<{ loaded: { updates: number; bytes: number } }>(b.data, 'info')
    assert.ok(info.loaded.updates > 0 && info.loaded.bytes > 0, 'the replica was read from disk')
    const onDisk = await json<Job>(b.data, 'status', first.id)
    assert.equal(onDisk.state, 'DONE')
    // alpha redials beta (same address): beta catches up with what it missed
    await waitFor('beta caught up', async () => {
      const m = await json<Job>(b.data, 'status', missed.id).catch(() => undefined)
      const f = await json<Job>(b.data, 'status', first.id)
      return m !== undefined && f.priority === 5
    })
    // Both views agree once beta has caught up. (Beta hands back its own stale attempt on restart;
    // it claims nothing before its first sync with alpha, so it cannot re-run what alpha finished:
    // the dispatcher's start-up gate, test/node/dispatcher.test.ts.)
    let views = ''
    await waitFor(
      'slow job DONE and the same on both peers',
      async () => {
        const [ja, jb] = await Promise.all([a, b].map((p) => json<Job>(p.data, 'status', slow.id)))
        views = JSON.stringify([ja!.tasks, jb!.tasks])
        return (
          ja!.state === 'DONE' &&
          jb!.state === 'DONE' &&
          JSON.stringify(ja!.tasks) === JSON.stringify(jb!.tasks)
        )
      },
      { timeoutMs: 30_000 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; alpha, beta: ${views}`)
    })
  })

  it('SIGTERM: the node hands back what it runs, saves its replica and exits 0', async () => {
    // beta was restarted by the test before: both must hear each other again first
    for (const p of [a, b]) {
      await waitFor(`${p.name} hears both hosts`, async () => {
        const h = await json<{ liveness: string }[]>(p.data, 'hosts')
        return h.length === 2 && h.every((x) => x.liveness === 'alive')
      })
    }
    const slow = await json<{ id: string }>(
      b.data,
      'submit',
      'sleep',
      '--frames',
      '1-2',
      '--set',
      'seconds=3',
      '--group',
      'shot1',
    )
    let last = ''
    await waitFor('each host runs one task', async () => {
      const j = await json<Job>(b.data, 'status', slow.id)
      last = JSON.stringify(j.tasks)
      return j.tasks.filter((t) => t.state === 'RUN').length === 2
    }).catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${last}`)
    })
    const exited = new Promise<number | null>((r) => a.proc!.once('exit', (code) => r(code)))
    a.proc!.kill('SIGTERM')
    assert.equal(await exited, 0)
    await assert.rejects(readFile(join(a.data, 'api.json')), { code: 'ENOENT' })
    // beta runs the handed-back task at once (no waiting for alpha to be declared dead)
    const done = await waitFor('job DONE on beta alone', async () => {
      const j = await json<Job>(b.data, 'status', slow.id)
      return j.state === 'DONE' ? j : undefined
    })
    assert.ok(done.tasks.every((t) => t.owner === b.peerId))
    assert.match((await cli(b.data, 'jobs')).stdout, new RegExp(`${slow.id}.*shot1`))
  })
})
