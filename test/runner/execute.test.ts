import assert from 'node:assert/strict'
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { type OutputStream, type PhaseResult, runPhase } from '../../src/runner/execute.ts'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))
const fixture = (name: string) => join(fixtures, name)
let dir: string

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'openfarm-runner-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

function run(argv: string[], extra: { signal?: AbortSignal; timeoutMs?: number; killGraceMs?: number } = {}) {
  const lines: [OutputStream, string][] = []
  const done = runPhase(argv, {
    cwd: dir,
    signal: extra.signal ?? new AbortController().signal,
    timeoutMs: extra.timeoutMs,
    killGraceMs: extra.killGraceMs,
    onLine: (stream, line) => lines.push([stream, line]),
  })
  return { lines, done }
}

// Alive means running: a zombie waiting for a reaper counts as gone.
async function isAlive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

/** Polls (bounded) until fn is true; false if it never was. */
async function eventually(fn: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) if (await fn()) return true
  return false
}

async function readPid(file: string): Promise<number> {
  let text = ''
  const ok = await eventually(async () => {
    text = await readFile(file, 'utf8').catch(() => '')
    return text.trim() !== ''
  })
  assert.ok(ok, `no pid in ${file}`)
  return Number(text.trim())
}

function assertReason(r: PhaseResult, reason: string | RegExp) {
  if (typeof reason === 'string') assert.equal(r.reason, reason)
  else assert.match(r.reason ?? '', reason)
}

describe('runPhase', () => {
  it('captures lines of a successful run', async () => {
    const { lines, done } = run(['sh', fixture('lines.sh')])
    const r = await done
    assert.deepEqual(r, { ...r, ok: true, exitCode: 0, signal: null, reason: null })
    assert.ok(r.durationMs >= 0)
    assert.deepEqual(
      lines.filter(([s]) => s === 'stdout').map(([, l]) => l),
      ['out one', 'out two', 'out three'],
    )
    assert.deepEqual(
      lines.filter(([s]) => s === 'stderr').map(([, l]) => l),
      ['err one'],
    )
  })

  it('gives exit code 3 with the last stderr line as the reason', async () => {
    const r = await run(['sh', fixture('fail.sh')]).done
    assert.equal(r.ok, false)
    assert.equal(r.exitCode, 3)
    assertReason(r, 'exit code 3: something broke')
  })

  it('names a missing command, an unusable file and a missing cwd', async () => {
    assertReason(
      await run(['openfarm-no-such-command', 'x']).done,
      'command not found: openfarm-no-such-command',
    )
    const plain = join(dir, 'not-executable')
    await writeFile(plain, '#!/bin/sh\n')
    await chmod(plain, 0o644)
    assertReason(await run([plain]).done, `permission denied: ${plain}`)
    const r = await runPhase(['true'], {
      cwd: join(dir, 'gone'),
      signal: new AbortController().signal,
      onLine: () => {},
    })
    assertReason(r, /^working directory not found/)
  })

  it('times out, killing the process', async () => {
    const r = await run(['sleep', '30'], { timeoutMs: 300 }).done
    assertReason(r, 'timed out after 0.3 s')
    assert.equal(r.signal, 'SIGTERM')
    assert.ok(r.durationMs < 5000)
  })

  it('on abort kills the whole process tree, grandchild included', async () => {
    const ac = new AbortController()
    const pidFile = join(dir, 'tree.pid')
    const { done } = run(['sh', fixture('tree.sh'), pidFile], { signal: ac.signal })
    const grandchild = await readPid(pidFile)
    assert.ok(await isAlive(grandchild))
    ac.abort()
    const r = await done
    assertReason(r, 'cancelled')
    assert.equal(r.ok, false)
    assert.ok(await eventually(async () => !(await isAlive(grandchild))), 'grandchild still running')
  })

  it('escalates to SIGKILL when the tree ignores SIGTERM', async () => {
    const ac = new AbortController()
    const pidFile = join(dir, 'stubborn.pid')
    const { done } = run(['sh', fixture('tree.sh'), pidFile, 'ignore'], {
      signal: ac.signal,
      killGraceMs: 300,
    })
    const grandchild = await readPid(pidFile)
    const t0 = Date.now()
    ac.abort()
    const r = await done
    assertReason(r, 'cancelled')
    assert.equal(r.signal, 'SIGKILL')
    assert.ok(Date.now() - t0 >= 250, 'SIGKILL came before the grace period')
    assert.ok(await eventually(async () => !(await isAlive(grandchild))), 'grandchild still running')
  })

  it('returns at once when already aborted', async () => {
    const ac = new AbortController()
    ac.abort()
    const r = await run(['sleep', '30'], { signal: ac.signal }).done
    assertReason(r, 'cancelled')
    assert.equal(r.exitCode, null)
  })

  it('says why a run was stopped when the abort gives a reason', async () => {
    const ac = new AbortController()
    const { done } = run(['sleep', '30'], { signal: ac.signal })
    await new Promise((r) => setTimeout(r, 100))
    ac.abort(new Error('node shutting down'))
    assertReason(await done, 'cancelled: node shutting down')
    const before = new AbortController()
    before.abort(new Error('the task went to another host'))
    assertReason(
      await run(['sleep', '30'], { signal: before.signal }).done,
      'cancelled: the task went to another host',
    )
    // a reason that says it was a cancel is not said twice
    const user = new AbortController()
    user.abort(new Error('the job was cancelled'))
    assertReason(await run(['sleep', '30'], { signal: user.signal }).done, 'the job was cancelled')
  })

  it('kills stragglers the leader leaves behind, so their pipes do not hold us', async () => {
    const pidFile = join(dir, 'straggler.pid')
    const t0 = Date.now()
    const { lines, done } = run(['sh', fixture('straggler.sh'), pidFile])
    const r = await done
    assert.equal(r.ok, true)
    assert.ok(Date.now() - t0 < 3000)
    assert.deepEqual(lines, [['stdout', 'leader done']])
    const straggler = await readPid(pidFile)
    assert.ok(await eventually(async () => !(await isAlive(straggler))), 'straggler still running')
  })

  it('does not wait for a process that left the group and keeps its output open', async () => {
    const pidFile = join(dir, 'escape.pid')
    const t0 = Date.now()
    const { done } = run(['sh', fixture('escape.sh'), pidFile])
    const r = await done
    const escaped = await readPid(pidFile)
    process.kill(escaped, 'SIGKILL')
    assert.equal(r.exitCode, 0)
    assert.ok(Date.now() - t0 < 3000, 'waited for the escaped process')
  })

  it('cuts long lines and survives a throwing onLine', async () => {
    const lines: string[] = []
    const r = await runPhase(['sh', '-c', 'head -c 10000 /dev/zero | tr "\\0" a; echo; echo next'], {
      cwd: dir,
      signal: new AbortController().signal,
      maxLineChars: 100,
      onLine: (_s, line) => {
        lines.push(line)
        throw new Error('consumer bug')
      },
    })
    assert.equal(r.ok, true)
    assert.deepEqual(lines, [`${'a'.repeat(100)} [... 9900 more characters cut]`, 'next'])
  })

  it('delivers lines while the child runs, from files that are gone from the start', async () => {
    const outputDir = await mkdtemp(join(dir, 'out-'))
    const lines: string[] = []
    const done = runPhase(['sh', '-c', 'echo first; sleep 1.5; echo second >&2'], {
      cwd: dir,
      outputDir,
      signal: new AbortController().signal,
      onLine: (stream, line) => lines.push(`${stream} ${line}`),
    })
    let ended = false
    void done.then(() => {
      ended = true
    })
    assert.ok(await eventually(async () => lines.length > 0, 1000), 'no line while the child ran')
    assert.equal(ended, false)
    assert.deepEqual(lines, ['stdout first'])
    assert.deepEqual(await readdir(outputDir), [], 'the output files were left under a name')
    assert.equal((await done).ok, true)
    assert.deepEqual(lines, ['stdout first', 'stderr second'])
    assert.deepEqual(await readdir(outputDir), [])
  })

  it('keeps a character whole when a read ends inside it', async () => {
    // 1 + 2 x 40000 bytes: the first 64 KiB read ends in the middle of an é
    const lines: string[] = []
    const r = await runPhase(
      ['node', '-e', 'process.stdout.write("a" + "\\u00e9".repeat(40000) + "\\nz\\n")'],
      {
        cwd: dir,
        signal: new AbortController().signal,
        maxLineChars: 100_000,
        onLine: (_s, line) => lines.push(line),
      },
    )
    assert.equal(r.ok, true)
    assert.deepEqual(lines, [`a${'\u00e9'.repeat(40000)}`, 'z'])
  })

  it('empties an output file that grew past its limit, once read, and loses no line', async () => {
    // 40 writes of 2048 lines (32 KiB) 70 ms apart, each one write(2); then the file's size
    const script =
      "const fs = require('fs'); " +
      "const b = Buffer.from(Array.from({ length: 2048 }, (_, i) => 1e14 + i).join('\\n') + '\\n'); " +
      'let n = 0; const t = setInterval(() => { fs.writeSync(1, b); ' +
      'if (++n === 40) { clearInterval(t); fs.writeSync(2, String(fs.fstatSync(1).size)) } }, 70)'
    let count = 0
    const err: string[] = []
    const r = await runPhase(['node', '-e', script], {
      cwd: dir,
      signal: new AbortController().signal,
      outputFileBytes: 256 * 1024,
      onLine: (stream, line) => {
        if (stream === 'stderr') err.push(line)
        else if (line.length === 15) count++
      },
    })
    assert.equal(r.ok, true)
    assert.equal(count, 40 * 2048)
    assert.ok(Number(err[0]) < 256 * 1024 + 64 * 1024, `the file grew to ${err[0]} bytes`)
  })

  it('drops output written faster than it is read, with a note, and keeps the file small', async () => {
    // 10 writes of 2 MiB, 70 ms apart: each time more than the limit waits to be read; then, alone,
    // a last line and the file's size
    const script =
      "const fs = require('fs'); const b = Buffer.alloc(2 * 1024 * 1024, 0x61); " +
      'let n = 0; const t = setInterval(() => { fs.writeSync(1, b); ' +
      "if (++n === 10) { clearInterval(t); setTimeout(() => { fs.writeSync(1, '\\nlast\\n'); " +
      'fs.writeSync(2, String(fs.fstatSync(1).size)) }, 150) } }, 70)'
    const out: string[] = []
    const err: string[] = []
    const r = await runPhase(['node', '-e', script], {
      cwd: dir,
      signal: new AbortController().signal,
      outputFileBytes: 256 * 1024,
      onLine: (stream, line) => (stream === 'stderr' ? err : out).push(line),
    })
    assert.equal(r.ok, true)
    assert.ok(
      out.some((l) =>
        /^\[openfarm: \d+ bytes of output dropped: written faster than they were read\]$/.test(l),
      ),
      'no note of what was dropped',
    )
    assert.equal(out.at(-1), 'last')
    assert.ok(Number(err[0]) < 5 * 1024 * 1024, `the file grew to ${err[0]} bytes`)
  })

  it('names an output directory it cannot use', async () => {
    const r = await runPhase(['true'], {
      cwd: dir,
      outputDir: join(dir, 'no-such-dir'),
      signal: new AbortController().signal,
      onLine: () => {},
    })
    assertReason(r, /^cannot start true: no file for its output in .*no-such-dir: ENOENT/)
  })

  it('refuses an empty argv', async () => {
    await assert.rejects(run([]).done, { name: 'InvalidTemplateError' })
  })
})
