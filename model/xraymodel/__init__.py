"""xraymodel: the ResNet-50 chest X-ray classifier tool chain (TensorFlow imported lazily).

Importable without TensorFlow (the operator and the online evaluator use these):
    findings            the 14 ChestX-ray14 finding names, in model output order
    metrics             AUROC + bootstrap CI, ROC, Youden, sensitivity/specificity, ECE, PSI, KS (NumPy)
    evaluation_report   labels + probabilities -> the evaluation report dict (NumPy)
    serving_rest        TF Serving REST predict bodies for the serving_default signature
    datasets, dicom_input, synthetic, staging, errors, cli
Need TensorFlow (imported by the command handlers only):
    network, losses, pipeline, training, evaluation, export, quantize, gradcam
"""
