/* vitrina-web: a shop's web app against the Vitrina API (see client.js), the typed errors
 * it throws (errors.js), and the browser's Web Push subscription (vitrina-push.js). */

export { VitrinaClient, CUSTOMER_TOKEN_HEADER, webPushRegistration } from "./client.js";
export {
  VitrinaError,
  VitrinaNetworkError,
  VitrinaApiError,
  VitrinaUnauthorizedError,
  VitrinaForbiddenError,
  VitrinaNotFoundError,
  VitrinaValidationError,
  VitrinaRateLimitError,
} from "./errors.js";
export { enableWebPush, urlBase64ToUint8Array, webPushSupported } from "./vitrina-push.js";

/** @typedef {import("./client.js").ClientOptions} ClientOptions */
/** @typedef {import("./client.js").CustomerTokenSource} CustomerTokenSource */
/** @typedef {import("./errors.js").ErrorBody} ErrorBody */
/** @typedef {import("./errors.js").FieldProblem} FieldProblem */
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
/** @typedef {import("./vitrina-push.js").WebPushOptions} WebPushOptions */
/** @typedef {import("./vitrina-push.js").WebPushEnabled} WebPushEnabled */
