from shop.cart import Cart


def test_total_with_discount_and_vat() -> None:
    cart = Cart("DE", code="WELCOME10")
    cart.add("kettle", 4250)
    assert cart.subtotal() == 4250
    assert cart.total() == 4552  # 4250 - 425 = 3825, + 19 % VAT = 4551.75 -> 4552
