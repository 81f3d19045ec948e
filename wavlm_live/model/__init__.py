"""wavlm_live.model"""
