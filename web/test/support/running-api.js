/* What the tests against a running API are given: its address, the tenant, the app key,
 * and for each prepared customer a customer token the shop's backend signed, their id and
 * a message sent to them. The Python test that starts the API
 * (tests/cloud/api/test_web_app_client.py) passes it as JSON in VITRINA_TEST_API. */

/**
 * @typedef {object} PreparedCustomer
 * @property {string} id the customer's public id
 * @property {string} token a customer token for them (their external id is its subject)
 * @property {number} message_id a push sent to them
 * @property {string} open_url that push's open link
 * @property {string} tag that push's notification tag
 */

/**
 * @typedef {object} RunningApi
 * @property {string} api_base
 * @property {string} tenant
 * @property {string} app_key
 * @property {Record<string, PreparedCustomer>} customers
 * @property {{ lat: number, lon: number, store: string, geofence: string }} geofence
 */

/** The running API, or null when these tests run without one (`npm test` alone). */
export function runningApi() {
  const text = process.env.VITRINA_TEST_API;
  return text ? /** @type {RunningApi} */ (JSON.parse(text)) : null;
}

/** Why a test against the API is skipped, or false when it runs. */
export const NEEDS_API = runningApi() ? false
  : "needs a running API (the pytest test tests/cloud/api/test_web_app_client.py starts one)";
