/* What a refused or failed call to the Vitrina API throws.
 *
 * Every refusal the API sends is a JSON `ErrorBody` (cloud/api/errors.py): `detail` is a
 * sentence, a list of problems each at its field (422), or an object with a
 * machine-readable `reason`. The error keeps that body as it came, so an app can show the
 * sentence, point at the field, or act on the reason; its class says what to do next
 * (ask the shop's backend for a new customer token, wait, fix the request). */

/**
 * One problem of a request, at the place it was found (`["body", "keys", "auth"]`).
 * @typedef {object} FieldProblem
 * @property {(string | number)[]} loc
 * @property {string} msg
 * @property {string | null} [type]
 */

/**
 * The API's refusal body.
 * @typedef {object} ErrorBody
 * @property {string | FieldProblem[] | Record<string, unknown>} detail
 * @property {string | null} [message] with a list of problems: all of them in one line
 */

/** Anything that kept a request from getting an answer from the API. */
export class VitrinaError extends Error {}

/** The API could not be reached (offline, DNS, TLS, CORS): no answer to read.
 * Retrying later is safe for every call the client makes: each one is idempotent on
 * the API's side, or records a first occurrence only (opens). */
export class VitrinaNetworkError extends VitrinaError {
  /**
   * @param {string} method
   * @param {string} url
   * @param {unknown} cause what fetch threw
   */
  constructor(method, url, cause) {
    super(`${method} ${url}: the API could not be reached (${describe(cause)})`, { cause });
    this.name = "VitrinaNetworkError";
    this.method = method;
    this.url = url;
  }
}

/** The API answered with an error status; `body` is its ErrorBody. */
export class VitrinaApiError extends VitrinaError {
  /**
   * @param {string} method
   * @param {string} url
   * @param {number} status
   * @param {ErrorBody} body
   * @param {number | null} [retryAfter] seconds, from a Retry-After header
   */
  constructor(method, url, status, body, retryAfter = null) {
    super(`${method} ${url}: HTTP ${status}: ${summary(body)}`);
    this.name = "VitrinaApiError";
    this.method = method;
    this.url = url;
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }

  /** The problems of a 422, each at its field; empty for other refusals. */
  get problems() {
    return Array.isArray(this.body.detail) ? this.body.detail : [];
  }

  /** The machine-readable reason some refusals carry (a location report without
   * consent says `location_consent_missing` or `location_consent_withdrawn`); null when there is none. */
  get reason() {
    const detail = this.body.detail;
    if (detail && typeof detail === "object" && !Array.isArray(detail)) {
      const reason = detail.reason;
      return typeof reason === "string" ? reason : null;
    }
    return null;
  }
}

/** 401: no credentials or ones that do not authenticate. With an app key this is most
 * often a missing or expired customer token: ask the shop's backend for a new one. */
export class VitrinaUnauthorizedError extends VitrinaApiError {}

/** 403: authenticated, but not allowed (a customer token of another customer, a
 * location report without a recorded yes to location marketing). */
export class VitrinaForbiddenError extends VitrinaApiError {}

/** 404: no such customer, message or tenant (or not this caller's to see). */
export class VitrinaNotFoundError extends VitrinaApiError {}

/** 422: the request's content is invalid; `problems` says where. */
export class VitrinaValidationError extends VitrinaApiError {}

/** 429: too many attempts; `retryAfter` says how many seconds to wait. */
export class VitrinaRateLimitError extends VitrinaApiError {}

/** @type {Record<number, typeof VitrinaApiError>} */
const BY_STATUS = {
  401: VitrinaUnauthorizedError,
  403: VitrinaForbiddenError,
  404: VitrinaNotFoundError,
  422: VitrinaValidationError,
  429: VitrinaRateLimitError,
};

/**
 * The error for an answer with an error status, of the class its status calls for.
 * @param {string} method
 * @param {string} url
 * @param {number} status
 * @param {ErrorBody} body
 * @param {number | null} retryAfter
 * @returns {VitrinaApiError}
 */
export function apiError(method, url, status, body, retryAfter) {
  const ErrorClass = BY_STATUS[status] || VitrinaApiError;
  const error = new ErrorClass(method, url, status, body, retryAfter);
  error.name = ErrorClass.name;
  return error;
}

/**
 * An ErrorBody from whatever text came back: a proxy in front of the API may answer
 * with HTML, and the error must still say something.
 * @param {string} text
 * @returns {ErrorBody}
 */
export function errorBody(text) {
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === "object" && "detail" in parsed) return parsed;
  } catch (_err) {
    // not JSON: fall through
  }
  return { detail: text.trim().slice(0, 200) || "no error body" };
}

/**
 * The sentence an error body says, in one line.
 * @param {ErrorBody} body
 * @returns {string}
 */
function summary(body) {
  if (typeof body.message === "string" && body.message) return body.message;
  const detail = body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((p) => `${p.loc.join(".")}: ${p.msg}`).join("; ");
  const text = detail.msg ?? detail.message;
  return typeof text === "string" ? text : JSON.stringify(detail);
}

/** @param {unknown} cause */
function describe(cause) {
  return cause instanceof Error ? cause.message : String(cause);
}
