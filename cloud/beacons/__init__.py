"""The app's reports of the store's own beacon (`shared.beacon`): which store, whether the
id is current, and the presence transitions they give."""
