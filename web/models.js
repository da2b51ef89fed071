/* The shapes the API takes and answers, with the API's own field names (the OpenAPI
 * document at /openapi.json is the reference): an app written against the HTTP API in
 * Kotlin or Swift and one using this client speak of the same fields.
 *
 * Times go out as a Date or an ISO 8601 string with its offset, and come back as ISO
 * 8601 strings in UTC. */

/**
 * A customer or an anonymous installation, as the API shows it to the app.
 * @typedef {object} Customer
 * @property {string} id the public id (`cus_` and 32 hex digits): what the app keeps
 * @property {string} tenant
 * @property {boolean} anonymous true for an installation nobody signed in to yet
 * @property {string | null} external_id the shop's own customer id (the token's subject)
 * @property {string | null} email
 * @property {string | null} phone
 * @property {string | null} first_name
 * @property {string | null} last_name
 * @property {string | null} birth_date
 * @property {string | null} locale
 * @property {string | null} time_zone
 * @property {Record<string, string | number | boolean>} attributes
 * @property {string} created_at
 * @property {string} updated_at
 */

/**
 * What an anonymous installation may say about the phone: nothing about its user.
 * @typedef {object} InstallationProfile
 * @property {string} [locale] "es", "es-ES"
 * @property {string} [time_zone] an IANA zone: quiet hours follow the customer's clock
 */

/**
 * What the app sends when its user signs in (with the customer token).
 * @typedef {object} SignInOptions
 * @property {string} [installation_id] the anonymous installation to merge into the
 *   customer: its devices and consent answers move over
 * @property {string} [locale]
 * @property {string} [time_zone]
 */

/**
 * The outcome of signing in: the customer, and whether this call made it.
 * @typedef {object} SignIn
 * @property {Customer} customer
 * @property {boolean} created
 */

/**
 * One answer to a consent question.
 * @typedef {object} ConsentAnswer
 * @property {string} channel "push", "web_push", "email", "sms" or "location_marketing"
 * @property {boolean} granted
 * @property {string} source where it was asked: "app", "web", "store"...
 * @property {Date | string} [given_at] when the user answered; defaults to now
 */

/**
 * A recorded answer.
 * @typedef {object} Consent
 * @property {number} id
 * @property {string} customer_id
 * @property {string} channel
 * @property {boolean} granted
 * @property {string} source
 * @property {string} given_at
 * @property {string} recorded_at
 */

/**
 * The current answer per channel, and every answer ever given (oldest first).
 * @typedef {object} ConsentState
 * @property {Record<string, Consent>} current
 * @property {Consent[]} ledger
 */

/**
 * A registered device: a delivery address or a presence identifier.
 * @typedef {object} Device
 * @property {number} id
 * @property {string} customer_id
 * @property {"fcm" | "web_push" | "app_beacon" | "wifi_mac"} kind
 * @property {boolean} active
 * @property {string} registered_at
 * @property {string | null} deactivated_at
 * @property {string | null} deactivation_reason
 * @property {string[]} pseudonym_key_ids keys a presence identifier is linked under
 */

/**
 * What PushSubscription.toJSON() gives (or the PushSubscription itself).
 * @typedef {object} PushSubscriptionLike
 * @property {string} [endpoint]
 * @property {{ p256dh?: string, auth?: string }} [keys]
 * @property {() => PushSubscriptionLike} [toJSON]
 */

/**
 * One location fix: the disc of `accuracy_m` metres around the point.
 * @typedef {object} LocationFix
 * @property {number} lat
 * @property {number} lon
 * @property {number} accuracy_m
 * @property {Date | string} [at] when the phone took it; defaults to now
 */

/**
 * A geofence the customer is in.
 * @typedef {object} Stay
 * @property {string} geofence
 * @property {string} store
 * @property {string} entered_at
 * @property {boolean} dwelt
 */

/**
 * A geofence entered, dwelt in or left, as a scenario trigger.
 * @typedef {object} Transition
 * @property {string} geofence
 * @property {string} store
 * @property {"enter" | "dwell" | "exit"} kind
 * @property {string} at
 * @property {string} entered_at
 * @property {number | null} trigger_id
 */

/**
 * What the API made of a location report.
 * @typedef {object} LocationOutcome
 * @property {string} customer_id
 * @property {number} geofence_version
 * @property {Stay[]} inside
 * @property {Transition[]} transitions
 * @property {number} ignored fixes older than the customer's latest, not used
 */

/**
 * A customer's coupon, with its offer and state.
 * @typedef {object} Coupon
 * @property {number} id
 * @property {string} code
 * @property {string} offer_key
 * @property {number} discount_percent
 * @property {string | null} sku
 * @property {string | null} category
 * @property {string} issued_at
 * @property {string} expires_at
 * @property {string | null} redeemed_at
 * @property {string | null} order_id
 * @property {string} status
 */

/**
 * The answer to an open report by message id.
 * @typedef {object} MessageOpened
 * @property {number} message_id
 * @property {string | null} opened_at the first open's time (a later report keeps it)
 */

export {};
