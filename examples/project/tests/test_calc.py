import unittest

import calc


class AddTest(unittest.TestCase):
    def test_small_numbers(self):
        self.assertEqual(calc.add(2, 3), 5)

    def test_negative(self):
        self.assertEqual(calc.add(-2, 2), 0)


class MulTest(unittest.TestCase):
    def test_by_zero(self):
        self.assertEqual(calc.mul(7, 0), 0)

    def test_commutes(self):
        self.assertEqual(calc.mul(3, 4), calc.mul(4, 3))


class DivTest(unittest.TestCase):
    def test_exact(self):
        self.assertEqual(calc.div(9, 3), 3)

    def test_by_zero_raises(self):
        with self.assertRaises(ZeroDivisionError):
            calc.div(1, 0)
