/**
 * Checks a value against the small JSON Schema subset the API schemas use: type (object, array,
 * string, number, integer, boolean), required, properties, items, additionalProperties, minimum and
 * $ref by name. Returns the list of violations with their paths; empty means valid.
 */
export type Schema = {
  type?: string;
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema;
  minimum?: number;
  $ref?: string;
};

export function validate(
  value: unknown,
  schema: Schema,
  defs: Record<string, Schema>,
  path = '$',
): string[] {
  if (schema.$ref) {
    const target = defs[schema.$ref];
    if (!target) return [`${path}: unknown $ref ${schema.$ref}`];
    return validate(value, target, defs, path);
  }
  const errs: string[] = [];
  const t = schema.type;
  const actual = Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value;
  if (t === 'integer') {
    if (!Number.isInteger(value))
      return [`${path}: expected integer, got ${JSON.stringify(value)}`];
  } else if (t && t !== actual) {
    return [`${path}: expected ${t}, got ${actual}`];
  }
  if (schema.minimum !== undefined && typeof value === 'number' && value < schema.minimum)
    errs.push(`${path}: ${value} < minimum ${schema.minimum}`);
  if (actual === 'object') {
    const o = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (!(r in o)) errs.push(`${path}: missing ${r}`);
    for (const [k, v] of Object.entries(o)) {
      const ps = schema.properties?.[k] ?? schema.additionalProperties;
      if (ps) errs.push(...validate(v, ps, defs, `${path}.${k}`));
    }
  }
  if (actual === 'array' && schema.items)
    (value as unknown[]).forEach((v, i) =>
      errs.push(...validate(v, schema.items!, defs, `${path}[${i}]`)),
    );
  return errs;
}
