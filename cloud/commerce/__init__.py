"""Commerce events from the shop: carts, orders, newsletter, app and push opens."""
