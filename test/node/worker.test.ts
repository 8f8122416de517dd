// The worker's work directories: removed after a task succeeds, kept (and named in the task's log)
// when it fails, so its owner can look inside.

import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { logger } from '@libp2p/logger'
import { STAGED_FILE } from '../../src/node/orphans.ts'
import type { TaskFiles } from '../../src/node/taskfiles.ts'
import { type WorkerInit, worker } from '../../src/node/worker.ts'
import { parseAppDef } from '../../src/runner/appconfig.ts'
import { getApp } from '../../src/runner/apps.ts'
import { compileJob } from '../../src/runner/compile.ts'
import { tempDir, waitFor } from '../helpers.ts'

const apps = [getApp('sleep'), getApp('command')]
const ctx = { peer: 'peerA', now: 1, apps }

/** A worker over `workDir` whose tasks' output lines go into `lines`. */
const workerInto = (workDir: string, lines: string[], init: Partial<WorkerInit> = {}) =>
  worker({
    workDir,
    apps,
    log: logger('openfarm:test'),
    onLine: (_job, _task, _stream, text) => lines.push(text),
    ...init,
  })

describe("the worker's work directories", () => {
  it('are removed after success and kept, with their path in the log, after a failure', async () => {
    const dir = await tempDir('worker')
    try {
      const lines: string[] = []
      const run = workerInto(dir.path, lines)
      const signal = new AbortController().signal
      const ok = compileJob({ app: 'sleep', frames: '1', settings: { seconds: 0 } }, { ...ctx, id: 'jok' })
      assert.deepEqual(await run(ok, 0, 0, signal, () => undefined), { ok: true, reason: null })
      await run.settled()
      assert.deepEqual(await readdir(join(dir.path, 'jok')), [], 'nothing left of the task')

      const bad = compileJob({ app: 'command', settings: { argv: '["false"]' } }, { ...ctx, id: 'jbad' })
      const r = await run(bad, 0, 0, signal, () => undefined)
      assert.equal(r.ok, false)
      assert.match(r.reason ?? '', /exit|code 1/)
      const kept = join(dir.path, 'jbad', '0-0')
      assert.ok((await stat(kept)).isDirectory(), 'the failed task keeps its directory')
      assert.ok(lines.some((l) => l.includes(`work dir kept on ${kept}`)))
    } finally {
      await dir.remove()
    }
  })
})

describe("a phase's environment", () => {
  it("names the app's bytecode cache, where the node built one for it, and its own TMPDIR", async () => {
    const dir = await tempDir('worker-env')
    try {
      const lines: string[] = []
      const run = workerInto(dir.path, lines, {
        pycache: (app) => (app === 'command' ? '/data/cache/pyc' : undefined),
      })
      const show = compileJob(
        {
          app: 'command',
          settings: { argv: '["sh","-c","echo \\"cache=$PYTHONPYCACHEPREFIX tmp=$TMPDIR\\""]' },
        },
        { ...ctx, id: 'jenv' },
      )
      assert.deepEqual(await run(show, 0, 0, new AbortController().signal, () => undefined), {
        ok: true,
        reason: null,
      })
      assert.ok(
        lines.includes(`cache=/data/cache/pyc tmp=${join(dir.path, 'jenv', '0-0', 'tmp')}`),
        lines.join('\n'),
      )
      // an app the node built no cache for: no variable
      const other = workerInto(dir.path, lines, {
        pycache: (app) => (app === 'blender' ? '/data/cache/pyc' : undefined),
      })
      const again = { ...show, id: 'jenv2' }
      assert.equal((await other(again, 0, 0, new AbortController().signal, () => undefined)).ok, true)
      assert.ok(lines.includes(`cache= tmp=${join(dir.path, 'jenv2', '0-0', 'tmp')}`), lines.join('\n'))
      await run.settled()
      await other.settled()
    } finally {
      await dir.remove()
    }
  })
})

describe('a task got ready from its claim on', () => {
  const H = 'b'.repeat(64)
  const withInput = (id: string) =>
    compileJob(
      {
        app: 'sleep',
        frames: '1',
        settings: { seconds: 0 },
        inputs: [{ path: 'scene.blend', hash: H, size: 1 }],
      },
      { ...ctx, id },
    )

  function setup(dirPath: string) {
    const prepared: string[] = []
    /** what each prepare found in its input directory */
    const found: string[][] = []
    const lines: string[] = []
    let hold: Promise<void> = Promise.resolve()
    let failures = 0
    const files: TaskFiles = {
      prepare: async (spec, indir, signal) => {
        prepared.push(spec.id)
        found.push(await readdir(indir))
        if (failures > 0) {
          failures--
          await writeFile(join(indir, 'half.blend'), 'what a failed try leaves')
          throw new Error('no peer holds scene.blend')
        }
        await writeFile(join(indir, 'scene.blend'), 'x')
        await Promise.race([
          hold,
          new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
        ])
        return 1
      },
      publish: async () => ({ size: 1 }),
      holdForEnd: () => undefined,
    }
    const w = worker({
      workDir: dirPath,
      apps,
      log: logger('openfarm:test'),
      files,
      onLine: (_job, _task, _stream, text) => lines.push(text),
    })
    return {
      w,
      prepared,
      found,
      lines,
      holdUntil: (p: Promise<void>) => (hold = p),
      failNext: () => failures++,
    }
  }

  /** A fresh work directory with a worker on it (setup), removed after `f`. */
  async function withSetup(f: (t: ReturnType<typeof setup>, dir: string) => Promise<void>): Promise<void> {
    const dir = await tempDir('worker')
    try {
      await f(setup(dir.path), dir.path)
    } finally {
      await dir.remove()
    }
  }

  it('runs on what was staged: the inputs are placed once, and the log says so', async () => {
    await withSetup(async (t) => {
      const spec = withInput('jahead')
      t.w.stage(spec, 0, 0)
      const r = await t.w(spec, 0, 0, new AbortController().signal, () => undefined)
      assert.deepEqual(r, { ok: true, reason: null })
      assert.deepEqual(t.prepared, ['jahead'], 'prepared once, ahead')
      assert.ok(
        t.lines.some((l) => /fetched 1 input file\(s\) in \d+ ms \(ahead, from its claim on\)/.test(l)),
      )
      // without staging the run places them itself
      const other = withInput('jnow')
      assert.equal((await t.w(other, 0, 0, new AbortController().signal, () => undefined)).ok, true)
      assert.deepEqual(t.prepared, ['jahead', 'jnow'])
    })
  })

  it('is marked as staged until its run takes it over (a failed run keeps its directory, unmarked)', async () => {
    await withSetup(async (t, dir) => {
      let release = (): void => {}
      t.holdUntil(new Promise<void>((r) => (release = r)))
      const spec = compileJob(
        {
          app: 'command',
          settings: { argv: '["false"]' },
          inputs: [{ path: 'scene.blend', hash: H, size: 1 }],
        },
        { ...ctx, id: 'jmark' },
      )
      const attemptDir = join(dir, 'jmark', '0-0')
      t.w.stage(spec, 0, 0)
      await waitFor('the staging to start', () => t.prepared.length === 1)
      assert.ok(existsSync(join(attemptDir, STAGED_FILE)), 'marked while only staged')
      release()
      const r = await t.w(spec, 0, 0, new AbortController().signal, () => undefined)
      assert.equal(r.ok, false)
      assert.ok(existsSync(join(attemptDir, 'in', 'scene.blend')), 'the failed run keeps its directory')
      assert.equal(existsSync(join(attemptDir, STAGED_FILE)), false, 'the run took it over')
    })
  })

  it('a run starts from an empty out/: what an earlier try left there (taken by the store) goes', async () => {
    await withSetup(async (t, dir) => {
      const attemptDir = join(dir, 'jout', '0-0')
      await mkdir(join(attemptDir, 'out'), { recursive: true })
      await writeFile(join(attemptDir, 'out', 'frame_0001.png'), 'a frame the store holds by a hard link')
      const spec = compileJob(
        { app: 'command', settings: { argv: '["ls", "-A", "out", "in"]' } },
        { ...ctx, id: 'jout' },
      )
      const r = await t.w(spec, 0, 0, new AbortController().signal, () => undefined)
      assert.deepEqual(r, { ok: true, reason: null })
      assert.ok(t.lines.includes('out:'), 'ls did not run')
      assert.equal(
        t.lines.some((l) => l.includes('frame_0001.png')),
        false,
      )
    })
  })

  it('unstage stops the staging and removes its directory; a run cancelled while waiting for it is cancelled', async () => {
    await withSetup(async (t, dir) => {
      const spec = withInput('jgone')
      t.holdUntil(new Promise(() => undefined)) // the inputs never finish arriving
      t.w.stage(spec, 0, 0)
      await new Promise((r) => setTimeout(r, 20))
      assert.ok((await stat(join(dir, 'jgone', '0-0', 'in', 'scene.blend'))).isFile())
      await t.w.unstage('jgone', 0, 0)
      assert.deepEqual(await readdir(join(dir, 'jgone')), [], 'nothing left of the staging')

      t.w.stage(spec, 1, 0)
      const ac = new AbortController()
      const running = t.w(spec, 1, 0, ac.signal, () => undefined)
      await new Promise((r) => setTimeout(r, 20))
      ac.abort(new Error('the job was cancelled'))
      assert.deepEqual(await running, { ok: false, reason: 'the job was cancelled' })
    })
  })

  it('what failed ahead is tried once more by the run', async () => {
    await withSetup(async (t) => {
      const spec = withInput('jretry')
      t.failNext()
      t.w.stage(spec, 0, 0)
      const r = await t.w(spec, 0, 0, new AbortController().signal, () => undefined)
      assert.deepEqual(r, { ok: true, reason: null })
      assert.deepEqual(t.prepared, ['jretry', 'jretry'])
      assert.deepEqual(t.found, [[], []], 'the second try starts from an empty input directory')
      assert.ok(
        t.lines.some((l) =>
          /getting ready ahead failed \(fetch inputs: no peer holds scene\.blend\); trying again/.test(l),
        ),
      )
    })
  })
})

describe("a chunk's frames", () => {
  // saves its frames one by one, as Blender does, then takes a while to quit
  const saver = parseAppDef(
    {
      name: 'saver',
      description: 'Saves a frame per frame of its chunk, then lingers before it exits.',
      enabledByDefault: true,
      detect: { command: 'sh' },
      settings: {},
      phases: [
        {
          name: 'run',
          argv: [
            'sh',
            '-c',
            'for f in $(seq "$2" "$3"); do p="$1/frame_$f.png"; echo "$f" > "$p"; echo "Saved: \'$p\'"; done; sleep 1',
            'sh',
            '{outdir}',
            '{first}',
            '{last}',
          ],
        },
      ],
      usesFrames: true,
      outputs: { pattern: "^Saved: '(?<path>.+)'$", perFrame: true },
    },
    'test',
  )
  /**
   * Runs `body` with a worker of the saver app (in a temporary directory, removed after) whose outputs
   * go to `files` (handed the list of what happened, to record into), and a job `id` of its frames
   * 1-3 in one chunk.
   */
  async function withSaver(
    id: string,
    files: (events: string[]) => Pick<TaskFiles, 'publish' | 'holdForEnd'>,
    body: (t: {
      run: ReturnType<typeof worker>
      spec: ReturnType<typeof compileJob>
      events: string[]
    }) => Promise<void>,
  ): Promise<void> {
    const dir = await tempDir('worker')
    try {
      const events: string[] = []
      const run = worker({
        workDir: dir.path,
        apps: [saver],
        log: logger('openfarm:test'),
        files: { prepare: async () => 0, ...files(events) },
      })
      const spec = compileJob({ app: 'saver', frames: '1-3', chunk: 3 }, { ...ctx, apps: [saver], id })
      await body({ run, spec, events })
    } finally {
      await dir.remove()
    }
  }

  it("are held for the application's end as soon as the last one is stored, and not before", async () => {
    await withSaver(
      'jsave',
      (events) => ({
        publish: async (_spec, o) => {
          events.push(`publish ${o.frame}`)
          return { size: 1 }
        },
        holdForEnd: (job) => {
          events.push(`hold ${job}`)
        },
      }),
      async ({ run, spec, events }) => {
        const t0 = performance.now()
        const result = run(spec, 0, 0, new AbortController().signal, () => undefined)
        await waitFor('the hold', () => events.includes('hold jsave'))
        const heldAfter = performance.now() - t0
        assert.deepEqual(events, ['publish 1', 'publish 2', 'publish 3', 'hold jsave'])
        assert.deepEqual(await result, { ok: true, reason: null })
        assert.ok(
          performance.now() - t0 >= heldAfter + 500,
          `held ${Math.round(heldAfter)} ms in, the run ended ${Math.round(performance.now() - t0)} ms in`,
        )
        assert.equal(events.filter((e) => e.startsWith('hold')).length, 1, 'one hold per chunk')
      },
    )
  })

  it("end in the turn of the application's exit when every frame is stored by then", async () => {
    await withSaver(
      'jturn',
      () => ({ publish: async () => ({ size: 2 }), holdForEnd: () => undefined }),
      async ({ run, spec, events }) => {
        const result = run(
          spec,
          0,
          0,
          new AbortController().signal,
          () => undefined,
          () => {
            events.push('released')
            // the dispatcher's pass after a release runs on the next turn: the run's end is there by then
            setImmediate(() => events.push('next turn'))
          },
        )
        void result.then(() => events.push('ended'))
        assert.deepEqual(await result, { ok: true, reason: null })
        await new Promise((r) => setImmediate(r))
        assert.deepEqual(events, ['released', 'ended', 'next turn'])
      },
    )
  })

  it('free the slot once the application has exited, while the last of them are still being stored', async () => {
    await withSaver(
      'jfree',
      (events) => ({
        publish: async (_spec, o) => {
          // storing the last frame takes a while (a big file's hash, an fsync)
          if (o.frame === 3) await new Promise((r) => setTimeout(r, 1_500))
          events.push(`stored ${o.frame}`)
          return { size: 1 }
        },
        holdForEnd: () => undefined,
      }),
      async ({ run, spec, events }) => {
        const result = await run(
          spec,
          0,
          0,
          new AbortController().signal,
          () => undefined,
          () => events.push('released'),
        )
        events.push('ended')
        assert.deepEqual(result, { ok: true, reason: null })
        assert.deepEqual(events, ['stored 1', 'stored 2', 'released', 'stored 3', 'ended'])
      },
    )
  })
})

describe("a task's progress between the application's lines", () => {
  it("moves on by the application's own estimate while it prints nothing, short of done", async () => {
    // a frame of 4 s by its own estimate, that then prints nothing for 2.5 s
    const quiet = parseAppDef(
      {
        name: 'quiet',
        description: 'Says how long its frame takes, then renders it without a word.',
        enabledByDefault: true,
        detect: { command: 'sh' },
        settings: {},
        phases: [
          {
            name: 'run',
            argv: ['sh', '-c', 'echo "Fra:1 | Time:00:00.00 | Remaining:00:04.00 | Sample 0/9"; sleep 2.5'],
          },
        ],
        usesFrames: true,
        progress: [
          '^Fra:(?<frame>\\d+) ',
          '\\| Time:(?<elapsed>\\d+(?::\\d+){1,2}(?:\\.\\d+)?) \\| Remaining:(?<remaining>\\d+(?::\\d+){1,2}(?:\\.\\d+)?) \\|',
        ],
      },
      'test',
    )
    const dir = await tempDir('worker-tick')
    try {
      const run = worker({ workDir: dir.path, apps: [quiet], log: logger('openfarm:test') })
      const spec = compileJob({ app: 'quiet', frames: '1' }, { ...ctx, apps: [quiet], id: 'jquiet' })
      const seen: { fraction: number; frame?: number }[] = []
      const r = await run(spec, 0, 0, new AbortController().signal, (p) => seen.push(p))
      assert.deepEqual(r, { ok: true, reason: null })
      const moved = seen.filter((p) => p.fraction > 0)
      // ticks at about 1 s and 2 s: a quarter and a half of the frame, by its estimate
      assert.ok(moved.length >= 2, JSON.stringify(seen))
      assert.ok(moved.every((p) => p.frame === 1 && p.fraction < 1))
      assert.ok(moved.at(-1)!.fraction >= 0.4, JSON.stringify(seen))
      for (let i = 1; i < moved.length; i++) assert.ok(moved[i]!.fraction > moved[i - 1]!.fraction)
    } finally {
      await dir.remove()
    }
  })
})
