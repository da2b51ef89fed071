/* The Vitrina API as a shop's web app calls it.
 *
 *   import { VitrinaClient } from "vitrina-web";
 *   const vitrina = new VitrinaClient({ apiBase, tenant, appKey });
 *
 * The app key ships in every copy of the app, so it is public: alone it creates an
 * anonymous installation and acts on it by its unguessable id, nothing more. To act for a
 * signed-in customer the client also needs the customer token the shop's backend signed
 * for them (a JWT living at most an hour, sent as X-Customer-Token): give it as a string,
 * or as a function the client calls before each request. A function is called again with
 * `{ refresh: true }` when the API refuses its token (401), and the request is made once
 * more with the new one: an app keeps its token until then and never shows the user an
 * expired one.
 *
 * Every method returns the API's answer as JSON (the field names of the OpenAPI document)
 * and throws a VitrinaApiError subclass carrying the API's error body when it refuses. */

import { VitrinaNetworkError, VitrinaUnauthorizedError, apiError, errorBody } from "./errors.js";

/** @typedef {import("./models.js").Customer} Customer */
/** @typedef {import("./models.js").InstallationProfile} InstallationProfile */
/** @typedef {import("./models.js").SignInOptions} SignInOptions */
/** @typedef {import("./models.js").SignIn} SignIn */
/** @typedef {import("./models.js").ConsentAnswer} ConsentAnswer */
/** @typedef {import("./models.js").Consent} Consent */
/** @typedef {import("./models.js").ConsentState} ConsentState */
/** @typedef {import("./models.js").Device} Device */
/** @typedef {import("./models.js").PushSubscriptionLike} PushSubscriptionLike */
/** @typedef {import("./models.js").LocationFix} LocationFix */
/** @typedef {import("./models.js").LocationOutcome} LocationOutcome */
/** @typedef {import("./models.js").Coupon} Coupon */
/** @typedef {import("./models.js").MessageOpened} MessageOpened */

/** Where the app sends its signed-in customer's token. */
export const CUSTOMER_TOKEN_HEADER = "X-Customer-Token";

/**
 * The customer token, or where to get a current one; `refresh` is true when the API has
 * just refused the last one (expired, or its key retired), so a cached one will not do.
 * @typedef {string | ((request: { refresh: boolean }) => string | Promise<string>)} CustomerTokenSource
 */

/**
 * @typedef {object} ClientOptions
 * @property {string} apiBase the API's public address, e.g. "https://vitrina.shop.example"
 * @property {string} tenant the shop's tenant id
 * @property {string} appKey the tenant's app key (vk_...)
 * @property {CustomerTokenSource} [customerToken] for a signed-in customer
 * @property {typeof fetch} [fetch] defaults to the global fetch
 */

/**
 * @typedef {object} RequestOptions
 * @property {unknown} [body] sent as JSON
 * @property {boolean} [asCustomer] send the customer token (default true)
 */

/** A client for one tenant's app; immutable, so one may be shared across the app. */
export class VitrinaClient {
  /** @type {string} */ #apiBase;
  /** @type {string} */ #tenant;
  /** @type {string} */ #appKey;
  /** @type {CustomerTokenSource | undefined} */ #customerToken;
  /** @type {typeof fetch} */ #fetch;

  /** @param {ClientOptions} options */
  constructor(options) {
    for (const name of /** @type {const} */ (["apiBase", "tenant", "appKey"])) {
      if (typeof options[name] !== "string" || !options[name]) {
        throw new TypeError(`VitrinaClient needs ${name}`);
      }
    }
    this.#apiBase = options.apiBase.replace(/\/+$/, "");
    this.#tenant = options.tenant;
    this.#appKey = options.appKey;
    this.#customerToken = options.customerToken;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /** The same app acting for a signed-in customer (a new client: this one is unchanged).
   * @param {CustomerTokenSource} customerToken
   * @returns {VitrinaClient} */
  withCustomerToken(customerToken) {
    return new VitrinaClient({
      apiBase: this.#apiBase, tenant: this.#tenant, appKey: this.#appKey, customerToken,
      fetch: this.#fetch,
    });
  }

  /** Whether this client acts for a signed-in customer. */
  get signedIn() {
    return this.#customerToken !== undefined;
  }

  // --- who the app is --------------------------------------------------------------------

  /** Create an anonymous installation (before anyone signs in). Keep its id on the
   * device: it is all that reaches the installation, until a sign-in claims it.
   * @param {InstallationProfile} [profile]
   * @returns {Promise<Customer>} */
  async createInstallation(profile = {}) {
    return this.#call("POST", "/customers", { body: profile, asCustomer: false });
  }

  /** Sign the customer of the token in: the customer whose external id is the token's
   * subject, made if new. With `installation_id`, the anonymous installation's devices and
   * consent answers move to the customer and the installation is gone.
   * @param {SignInOptions} [options]
   * @returns {Promise<SignIn>} */
  async signIn(options = {}) {
    this.#needsToken("signIn");
    const response = await this.#send("POST", "/customers", { body: options });
    return { customer: /** @type {Customer} */ (await response.json()), created: response.status === 201 };
  }

  /** The customer's profile (the signed-in customer's own, or the installation's).
   * @param {string} customerId
   * @returns {Promise<Customer>} */
  async getCustomer(customerId) {
    return this.#call("GET", customerPath(customerId));
  }

  // --- consent ---------------------------------------------------------------------------

  /** Record an answer to a consent question. Nothing is sent on a channel, and no
   * location is used, without a recorded yes; a no takes effect at once.
   * @param {string} customerId
   * @param {ConsentAnswer} answer
   * @returns {Promise<Consent>} */
  async recordConsent(customerId, answer) {
    return this.#call("POST", `${customerPath(customerId)}/consent`, { body: answer });
  }

  /** The current answer per channel and the whole ledger.
   * @param {string} customerId
   * @returns {Promise<ConsentState>} */
  async getConsent(customerId) {
    return this.#call("GET", `${customerPath(customerId)}/consent`);
  }

  // --- devices ---------------------------------------------------------------------------

  /** Register this browser's Web Push subscription (PushManager.subscribe's result).
   * @param {string} customerId
   * @param {PushSubscriptionLike} subscription
   * @returns {Promise<Device>} */
  async registerWebPush(customerId, subscription) {
    const json = typeof subscription.toJSON === "function" ? subscription.toJSON() : subscription;
    return this.#device(customerId, webPushRegistration(json));
  }

  /** Register an FCM registration token (a web app using Firebase Messaging, or a
   * hybrid app). Register again whenever the SDK hands out a new token.
   * @param {string} customerId
   * @param {string} token
   * @returns {Promise<Device>} */
  async registerFcmToken(customerId, token) {
    return this.#device(customerId, { kind: "fcm", token });
  }

  /** Register the install id the app's BLE beacon advertises, so the stores' gateways
   * can link what they see to this customer (stored only as keyed pseudonyms).
   * @param {string} customerId
   * @param {string} installId 4-128 of A-Z a-z 0-9 . _ -
   * @returns {Promise<Device>} */
  async registerAppBeacon(customerId, installId) {
    return this.#device(customerId, { kind: "app_beacon", install_id: installId });
  }

  /** The customer's devices, active or not.
   * @param {string} customerId
   * @returns {Promise<Device[]>} */
  async listDevices(customerId) {
    return this.#call("GET", `${customerPath(customerId)}/devices`);
  }

  /** The tenant's VAPID public key (base64url), PushManager.subscribe's
   * applicationServerKey. It is made once and kept: subscriptions are bound to it.
   * @returns {Promise<string>} */
  async webPushPublicKey() {
    /** @type {{ application_server_key: string }} */
    const answer = await this.#call("GET", "/web-push/public-key", { asCustomer: false });
    return answer.application_server_key;
  }

  // --- locations, coupons, opens -----------------------------------------------------------

  /** Report where the customer is (one fix, or several in any order). Refused (403,
   * reason `location_consent_missing` or `location_consent_withdrawn`, nothing kept) unless the customer's
   * latest answer on `location_marketing` is a yes.
   * @param {string} customerId
   * @param {LocationFix | LocationFix[]} fixes
   * @returns {Promise<LocationOutcome>} */
  async reportLocation(customerId, fixes) {
    return this.#call("POST", `${customerPath(customerId)}/locations`, { body: fixes });
  }

  /** The customer's coupons, newest first, with their state now.
   * @param {string} customerId
   * @returns {Promise<Coupon[]>} */
  async listCoupons(customerId) {
    return this.#call("GET", `${customerPath(customerId)}/coupons`);
  }

  /** Report that the signed-in customer opened a message (the push's data carries
   * `message_id`). The first open counts; reporting again changes nothing.
   * @param {number | string} messageId
   * @param {{ opened_at?: Date | string }} [options]
   * @returns {Promise<MessageOpened>} */
  async reportOpened(messageId, options = {}) {
    return this.#call("POST", `/messages/${encodeURIComponent(String(messageId))}/opened`,
      { body: options });
  }

  /** Report an open through the message's own open link (the push's `open_url`): what an
   * anonymous installation, or a service worker without a token, uses. The link is the
   * credential; no key is sent.
   * @param {string} openUrl
   * @param {{ tag?: string, opened_at?: Date | string }} [options]
   * @returns {Promise<void>} */
  async reportOpenUrl(openUrl, options = {}) {
    const init = {
      method: "POST",
      headers: { "Content-Type": "text/plain;charset=UTF-8" },
      body: JSON.stringify(options),
      keepalive: true,
      credentials: /** @type {RequestCredentials} */ ("omit"),
    };
    await this.#answer("POST", openUrl, init);
  }

  // --- the wire ----------------------------------------------------------------------------

  /** @param {string} customerId @param {object} registration @returns {Promise<Device>} */
  #device(customerId, registration) {
    return this.#call("POST", `${customerPath(customerId)}/devices`, { body: registration });
  }

  /** @param {string} what */
  #needsToken(what) {
    if (this.#customerToken === undefined) {
      throw new TypeError(`${what} needs the customer token: use withCustomerToken()`);
    }
  }

  /**
   * A call whose answer is JSON.
   * @template T
   * @param {string} method
   * @param {string} path under /tenants/{tenant}
   * @param {RequestOptions} [options]
   * @returns {Promise<T>}
   */
  async #call(method, path, options) {
    const response = await this.#send(method, path, options);
    return /** @type {T} */ (await response.json());
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {RequestOptions} [options]
   * @returns {Promise<Response>}
   */
  async #send(method, path, { body, asCustomer = true } = {}) {
    const url = `${this.#apiBase}/tenants/${encodeURIComponent(this.#tenant)}${path}`;
    const source = asCustomer ? this.#customerToken : undefined;
    try {
      return await this.#answer(method, url, await this.#init(method, body, source, false));
    } catch (error) {
      // A token source that can fetch a new token gets one chance to.
      if (!(error instanceof VitrinaUnauthorizedError) || typeof source !== "function") throw error;
      return this.#answer(method, url, await this.#init(method, body, source, true));
    }
  }

  /**
   * A request's options: the app key, the customer token when `source` gives one, JSON.
   * @param {string} method
   * @param {unknown} body
   * @param {CustomerTokenSource | undefined} source
   * @param {boolean} refresh
   * @returns {Promise<RequestInit>}
   */
  async #init(method, body, source, refresh) {
    /** @type {Record<string, string>} */
    const headers = { Accept: "application/json", Authorization: `Bearer ${this.#appKey}` };
    if (source !== undefined) headers[CUSTOMER_TOKEN_HEADER] = await currentToken(source, refresh);
    /** @type {RequestInit} */
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return init;
  }

  /**
   * The response, if its status is a success; else the error it means.
   * @param {string} method
   * @param {string} url
   * @param {RequestInit} init
   * @returns {Promise<Response>}
   */
  async #answer(method, url, init) {
    let response;
    try {
      response = await this.#fetch(url, init);
    } catch (error) {
      throw new VitrinaNetworkError(method, url, error);
    }
    if (response.ok) return response;
    const text = await response.text().catch(() => "");
    throw apiError(method, url, response.status, errorBody(text), retryAfter(response));
  }
}

/**
 * The devices route's body for a push subscription's JSON.
 * @param {PushSubscriptionLike} json
 * @returns {{ kind: "web_push", endpoint: string, keys: { p256dh: string, auth: string } }}
 */
export function webPushRegistration(json) {
  const keys = json.keys || {};
  if (!json.endpoint || !keys.p256dh || !keys.auth) {
    throw new TypeError("push subscription lacks endpoint or keys");
  }
  return { kind: "web_push", endpoint: json.endpoint, keys: { p256dh: keys.p256dh, auth: keys.auth } };
}

/** @param {string} customerId */
function customerPath(customerId) {
  if (typeof customerId !== "string" || !customerId) {
    throw new TypeError("a customer id (cus_...) is needed");
  }
  return `/customers/${encodeURIComponent(customerId)}`;
}

/** @param {CustomerTokenSource} source @param {boolean} refresh @returns {Promise<string>} */
async function currentToken(source, refresh) {
  const token = typeof source === "function" ? await source({ refresh }) : source;
  if (typeof token !== "string" || !token) throw new TypeError("the customer token is empty");
  return token;
}

/** Seconds from a Retry-After header (a number of seconds; dates are not sent by the API).
 * @param {Response} response */
function retryAfter(response) {
  const value = Number(response.headers.get("Retry-After"));
  return Number.isFinite(value) && value > 0 ? value : null;
}
