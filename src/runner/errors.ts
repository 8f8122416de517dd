// Named errors of the runner; tests and callers check `err.name`, never the message text.

/** A job names an application this build does not define. */
export class UnknownAppError extends Error {
  static override readonly name = 'UnknownAppError'
  override readonly name = 'UnknownAppError'
}

/** A job's settings do not fit the application's settings schema. */
export class InvalidSettingsError extends Error {
  static override readonly name = 'InvalidSettingsError'
  override readonly name = 'InvalidSettingsError'
}

/** A submitted job is malformed: frames, chunk, priority, dependencies or limits. */
export class InvalidSubmitError extends Error {
  static override readonly name = 'InvalidSubmitError'
  override readonly name = 'InvalidSubmitError'
}

/** An argv template cannot be rendered: an unknown placeholder, a stray brace, an empty command. */
export class InvalidTemplateError extends Error {
  static override readonly name = 'InvalidTemplateError'
  override readonly name = 'InvalidTemplateError'
}

/** An application definition is malformed (checked for built-ins in tests, for JSON files on load). */
export class InvalidAppError extends Error {
  static override readonly name = 'InvalidAppError'
  override readonly name = 'InvalidAppError'
}

/** A file Blender cannot read as a .blend: truncated, not a .blend at all, unreadable. */
export class CorruptBlendError extends Error {
  static override readonly name = 'CorruptBlendError'
  override readonly name = 'CorruptBlendError'
}

/** Reading a scene failed for another reason: no such file, no Blender, a timeout, a cancel. */
export class InspectError extends Error {
  static override readonly name = 'InspectError'
  override readonly name = 'InspectError'
}
