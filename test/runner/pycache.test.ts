import assert from 'node:assert/strict'
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { logger } from '@libp2p/logger'
import { getApp } from '../../src/runner/apps.ts'
import { type RunContext, renderArgv, renderEnv } from '../../src/runner/argv.ts'
import { inspectBlend } from '../../src/runner/blender/inspect.ts'
import { ensurePyCache, findPyCache, PyCacheError, pyCacheEnv } from '../../src/runner/blender/pycache.ts'
import { compileJob } from '../../src/runner/compile.ts'
import { findOnPath, runPhase } from '../../src/runner/execute.ts'
import { checkOutputs } from '../../src/runner/outputs.ts'
import { blenderMissing, makeTestScene } from '../fixtures/blender/make-scene.ts'
import { tempDir } from '../helpers.ts'

const missing = await blenderMissing()
const blender = getApp('blender')
const log = logger('openfarm:test')

describe("Blender's bytecode cache", { skip: missing ?? false }, () => {
  let tmp: { path: string; remove: () => Promise<void> }
  let bin: string
  let scene: string
  before(async () => {
    tmp = await tempDir('pycache')
    bin = (await findOnPath('blender', `/usr/bin:${process.env.PATH ?? ''}`))!
    await mkdir(join(tmp.path, 'project'))
    scene = (await makeTestScene(join(tmp.path, 'project'))).blend
  })
  after(() => tmp?.remove())

  /** One frame of the test scene as the worker starts Blender, with `extraEnv` last; its output lines. */
  async function task(name: string, pycache: string | undefined, extraEnv: Record<string, string> = {}) {
    const workdir = join(tmp.path, name)
    for (const d of ['in', 'out', 'tmp']) await mkdir(join(workdir, d), { recursive: true })
    const ctx: RunContext = {
      scene,
      indir: join(workdir, 'in'),
      outdir: join(workdir, 'out'),
      workdir,
      threads: 2,
      device: 'CPU',
    }
    const spec = compileJob(
      { app: 'blender', frames: '1', settings: { scene: 'shot/main.blend' } },
      { id: 'j1', peer: 'p', now: 0 },
    )
    const argv = renderArgv(blender, blender.phases[0]!, spec, 0, ctx)
    const lines: string[] = []
    const result = await runPhase(argv, {
      cwd: workdir,
      env: {
        ...renderEnv(blender, blender.phases[0]!, spec, 0, ctx),
        ...(pycache === undefined ? {} : pyCacheEnv(pycache)),
        TMPDIR: ctx.workdir,
        ...extraEnv,
      },
      signal: AbortSignal.timeout(60_000),
      onLine: (_s, line) => lines.push(line),
    })
    assert.equal(result.ok, true, `${result.reason}: ${lines.slice(-5).join(' / ')}`)
    const check = await checkOutputs(blender, lines, [1], ctx.outdir)
    assert.equal(check.ok, true, check.reason ?? '')
    return { lines, frame: check.files[0]!.path }
  }

  /** md5 of the decoded pixels (PNG bytes carry a date). */
  async function pixels(file: string): Promise<string> {
    const lines: string[] = []
    const r = await runPhase(['ffmpeg', '-v', 'error', '-i', file, '-f', 'md5', '-'], {
      cwd: tmp.path,
      signal: AbortSignal.timeout(30_000),
      onLine: (_s, l) => lines.push(l),
    })
    assert.equal(r.ok, true, r.reason ?? '')
    return lines.find((l) => l.startsWith('MD5='))!
  }

  it('is built once per binary, and a task started with it compiles none of its modules from source', async () => {
    const root = join(tmp.path, 'cache')
    const prefix = await ensurePyCache({ blender: bin, key: 'blender-a', root, log })
    // Blender's start-up scripts are in it, under their absolute paths
    const blUi = join(prefix, '/usr/share/blender/scripts/startup/bl_ui/__init__.cpython-311.pyc')
    assert.ok((await stat(blUi)).size > 0, `${blUi} was not written`)
    // asked again for the same binary: the same cache, not built again
    const marker = join(prefix, '..', 'openfarm-ready')
    const built = (await stat(marker)).mtimeMs
    await writeFile(join(prefix, 'kept'), '')
    assert.equal(await ensurePyCache({ blender: bin, key: 'blender-a', root, log }), prefix)
    assert.equal((await stat(marker)).mtimeMs, built)
    assert.ok((await stat(join(prefix, 'kept'))).isFile())

    // PYTHONVERBOSE (set after the blanking) makes Python say where each module's code came from
    const { lines, frame } = await task('cached', prefix, { PYTHONVERBOSE: '1' })
    const from = lines.flatMap((l) => /^# code object from '?(.+?)'?$/.exec(l)?.slice(1) ?? [])
    const cached = from.filter((f) => f.startsWith(`${prefix}/`) && f.endsWith('.pyc'))
    const compiled = from.filter((f) => !cached.includes(f))
    assert.ok(cached.length > 100, `only ${cached.length} modules came from the cache`)
    assert.ok(cached.includes(blUi))
    assert.deepEqual(compiled, [], 'modules compiled from source although the cache holds them')
    // and the frame is the one a plain Blender renders
    const plain = await task('plain', undefined)
    assert.equal(await pixels(frame), await pixels(plain.frame))

    // `openfarm submit` beside the node finds it, and reads the scene the same with it
    assert.equal(await findPyCache(root), prefix)
    assert.equal(await findPyCache(join(tmp.path, 'nothing-here')), undefined)
    assert.deepEqual(await inspectBlend(scene, { pycache: prefix }), await inspectBlend(scene))

    // another binary: its own cache; the old one goes, and so do the remains of a build a stopped
    // node left behind
    await mkdir(join(root, '0123456789abcdef.building', 'pyc'), { recursive: true })
    const other = await ensurePyCache({ blender: bin, key: 'blender-b', root, log })
    assert.notEqual(other, prefix)
    assert.deepEqual(await readdir(root), [basename(join(other, '..'))])
  })

  it('changes nothing else of the Python a Blender task runs with', async () => {
    const prefix = await ensurePyCache({ blender: bin, key: 'blender-a', root: join(tmp.path, 'env'), log })
    // a PYTHONPATH in the node's environment (which a phase's environment is added to)
    const extra = join(tmp.path, 'extra')
    const expr =
      'import sys, site; print("OPENFARM-PYTHON", sys.path, site.ENABLE_USER_SITE, ' +
      'sys.flags.ignore_environment, sys.flags.no_user_site, sys.flags.isolated, sys.dont_write_bytecode)'
    const probe = async (env: Record<string, string>) => {
      const lines: string[] = []
      const r = await runPhase([bin, '-b', '--factory-startup', '--python-expr', expr], {
        cwd: tmp.path,
        env: { PYTHONPATH: extra, ...env },
        signal: AbortSignal.timeout(60_000),
        onLine: (_s, l) => lines.push(l),
      })
      assert.equal(r.ok, true, r.reason ?? '')
      const line = lines.find((l) => l.startsWith('OPENFARM-PYTHON'))
      assert.ok(line !== undefined, lines.slice(-5).join(' / '))
      return line
    }
    const plain = await probe({})
    assert.ok(plain.includes(extra), `this Blender reads PYTHONPATH: ${plain}`)
    assert.equal(await probe(pyCacheEnv(prefix)), plain)
  })

  it('says why when Blender cannot build it, and leaves nothing behind', async () => {
    const root = join(tmp.path, 'broken')
    await assert.rejects(
      ensurePyCache({ blender: '/bin/false', key: 'false', root, log }),
      (err: Error) =>
        err instanceof PyCacheError && /could not build its bytecode cache: exit code 1/.test(err.message),
    )
    assert.deepEqual(await readdir(root), [])
  })
})

if (missing !== null) {
  describe("Blender's bytecode cache with a real Blender", () => {
    it('needs Blender', (t) => t.skip(missing))
  })
}
