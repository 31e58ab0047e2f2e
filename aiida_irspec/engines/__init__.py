"""What runs on a compute node: tblite MD and Born charges, VASP input building."""
