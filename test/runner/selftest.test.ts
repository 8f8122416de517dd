import assert from 'node:assert/strict'
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { getApp } from '../../src/runner/apps.ts'
import { detectApp } from '../../src/runner/detect.ts'
import { renderSeconds, selfTestApp } from '../../src/runner/selftest.ts'
import { blenderMissing } from '../fixtures/blender/make-scene.ts'
import { tempDir } from '../helpers.ts'

const missing = await blenderMissing()
const blender = getApp('blender')
const ffmpeg = getApp('ffmpeg')

describe('selfTestApp', () => {
  let tmp: { path: string; remove: () => Promise<void> }
  const script = async (name: string, body: string) => {
    const file = join(tmp.path, name)
    await writeFile(file, `#!/bin/sh\n${body}\n`)
    await chmod(file, 0o755)
    return file
  }
  before(async () => {
    tmp = await tempDir('selftest')
  })
  after(() => tmp.remove())

  it('passes the real Blender with a CPU speed, in a few seconds', { skip: missing ?? false }, async () => {
    const detected = await detectApp(blender)
    assert.equal(detected.available, true, detected.reason ?? '')
    const started = Date.now()
    const r = await selfTestApp(blender, detected, { workDir: tmp.path })
    const ms = Date.now() - started
    assert.equal(r.ok, true, r.ok ? '' : r.reason)
    if (!r.ok) return
    assert.equal(r.devices?.[0]?.type, 'CPU')
    assert.ok(r.devices[0].secondsPerFrame > 0 && r.devices[0].secondsPerFrame < 5)
    assert.equal(r.devices.length, 1, 'no GPU on this machine')
    assert.equal(r.features, undefined, "Debian's Blender is built without OpenImageDenoise")
    assert.ok(ms < 8000, `self-test took ${ms} ms`)
  })

  it('passes the real ffmpeg (an H.264 encode counted by ffprobe)', { skip: missing ?? false }, async () => {
    const detected = await detectApp(ffmpeg)
    assert.equal(detected.available, true, detected.reason ?? '')
    assert.match(detected.version ?? '', /^\d+\.\d+/)
    assert.deepEqual(await selfTestApp(ffmpeg, detected, { workDir: tmp.path }), { ok: true })
  })

  it('says why a broken Blender fails: exits 1, or exits 0 having rendered nothing', async () => {
    // Detection finds it and reads its version; the render then fails.
    const bin = join(tmp.path, 'bin')
    await mkdir(bin)
    const crash = join(bin, 'blender')
    await writeFile(
      crash,
      '#!/bin/sh\nif [ "$1" = --version ]; then echo "Blender 3.4.1"; exit 0; fi\necho "Segmentation fault" >&2\nexit 1\n',
    )
    await chmod(crash, 0o755)
    const detected = await detectApp(blender, { env: { PATH: bin } })
    assert.deepEqual(detected, { available: true, version: '3.4.1', path: crash, reason: null })
    const r1 = await selfTestApp(blender, detected, { workDir: tmp.path })
    assert.deepEqual(r1, {
      ok: false,
      reason:
        'self-test render on CPU: exit code 1: Segmentation fault; Blender saved 0 of 1 frame (missing 1)',
    })
    const idle = await script('blender-idle', 'echo "Blender 3.4.1"; echo "Error: Cannot read file"; exit 0')
    const r2 = await selfTestApp(blender, { path: idle, version: '3.4.1' }, { workDir: tmp.path })
    assert.deepEqual(r2, {
      ok: false,
      reason: 'self-test render on CPU: Blender saved 0 of 1 frame (missing 1): Error: Cannot read file',
    })
    const absent = await selfTestApp(blender, { path: null, version: null }, { workDir: tmp.path })
    assert.deepEqual(absent, { ok: false, reason: 'Blender was not found on this host' })
  })

  it("announces what the Blender's build can do, as its test render prints it", async () => {
    // a Blender that renders the test frame and was built with OpenImageDenoise
    const fake = await script(
      'blender-oidn',
      [
        'while [ "$1" != -o ]; do shift; done',
        'f=$(echo "$2" | sed s/####/0001/).png',
        'mkdir -p "$(dirname "$f")" && echo png > "$f"',
        "echo 'OPENFARM-DEVICES []'",
        'echo \'OPENFARM-FEATURES {"oidn": true}\'',
        'echo "Saved: \'$f\'"',
        "echo ' Time: 00:00.30 (Saving: 00:00.10)'",
      ].join('\n'),
    )
    const r = await selfTestApp(blender, { path: fake, version: '4.2.0' }, { workDir: tmp.path })
    assert.deepEqual(r, { ok: true, devices: [{ type: 'CPU', secondsPerFrame: 0.2 }], features: ['oidn'] })
  })

  it('says why a broken ffmpeg fails', async () => {
    const bad = await script('ffmpeg-bad', 'echo "Unknown encoder \'libx264\'" >&2; exit 1')
    const r = await selfTestApp(ffmpeg, { path: bad, version: '5.1' }, { workDir: tmp.path })
    assert.deepEqual(r, { ok: false, reason: "self-test encode: exit code 1: Unknown encoder 'libx264'" })
    const silent = await script('ffmpeg-silent', 'exit 0')
    const r2 = await selfTestApp(ffmpeg, { path: silent, version: '5.1' }, { workDir: tmp.path })
    assert.equal(r2.ok, false)
    assert.match(r2.ok ? '' : r2.reason, /^self-test encode: ffmpeg wrote no file in /)
  })

  it('passes apps without a self-test', async () => {
    assert.deepEqual(
      await selfTestApp(getApp('echo'), { path: '/bin/echo', version: null }, { workDir: tmp.path }),
      {
        ok: true,
      },
    )
  })

  it('reads Blender’s render time without the saving', () => {
    assert.equal(renderSeconds([' Time: 00:00.37 (Saving: 00:00.23)']), 0.14000000000000001)
    assert.equal(renderSeconds([' Time: 01:02:03.50 (Saving: 00:00.50)']), 3723)
    assert.equal(renderSeconds(['Saved: x']), null)
  })
})

if (missing !== null) {
  describe('self-tests with the real binaries', () => {
    it('needs Blender', (t) => t.skip(missing))
  })
}
